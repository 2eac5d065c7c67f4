package anomaly

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// Types of detector, as named in the configuration.
const (
	TypeThreshold = "threshold"
	TypeRate      = "rate"
	TypeZScore    = "zscore"
	TypeMAD       = "mad"
	TypeFlatline  = "flatline"
	TypeSilence   = "silence"
	TypeAuto      = "auto"
	// TypeRange is the implicit detector of a rule with a clamp filter: it
	// scores 1 while the reading is flagged agent.FlagOutOfRange.
	TypeRange = "range"
)

// ErrBadState is returned when restoring state that does not fit the rule.
var ErrBadState = errors.New("bad detector state")

// Detector scores one sensor's readings. Implementations keep O(1) or
// O(log w) state, never allocate in Update, and return a score in [0,1]
// (never NaN) for every finite value.
type Detector interface {
	// Type is the detector's configured type ("auto", "threshold", ...).
	Type() string
	// Update scores v at reading time t (Unix nanoseconds) and learns it.
	Update(t int64, v float64) float64
	// Band is the range the detector expects values in; ok is false while
	// it has no baseline.
	Band() (b agent.Band, ok bool)
	// Baseline is the statistics the last score was computed against.
	Baseline() agent.Baseline
	// AppendReason explains the last score in words ("value 87.2 above 60
	// for 30s"). It allocates only when dst is too small.
	AppendReason(dst []byte) []byte
	// AppendState appends the detector's learnt state; LoadState restores
	// it into a detector built from the same spec and returns the rest.
	AppendState(dst []byte) []byte
	LoadState(src []byte) ([]byte, error)
}

// DetectorSpec configures one detector. Only the fields of its Type are
// used; zero values take the defaults documented per field.
type DetectorSpec struct {
	Type string

	// threshold: fire above Max or below Min (nil: no limit); clear only
	// once back below ClearMax / above ClearMin (nil: the limit itself).
	Min, Max, ClearMin, ClearMax *float64

	// rate: Limit is the largest normal |change per second| (required).
	Limit float64

	// zscore, mad, auto: Threshold is the |z| that scores 0.8 (the default
	// open level). Zero means 4 for zscore and mad, the AutoParams value
	// for auto.
	Threshold float64
	// zscore: Alpha is the EW weight of a reading (zero: 0.02); Warmup the
	// readings before it scores (zero: 30).
	Alpha  float64
	Warmup int
	// mad: Window readings (zero: 64; at most 1024).
	Window int

	// flatline: Epsilon is the change that counts as movement (zero: any
	// change); Duration how long a stuck run may last (zero: 1h).
	// MinReadings (zero: 10) readings must be stuck too, and, when
	// RunFactor > 0, the run must also last RunFactor times the longest
	// stuck run seen before (so a sensor that is often constant is not
	// flagged).
	Epsilon     float64
	Duration    time.Duration
	MinReadings int
	RunFactor   float64

	// silence: After is the allowed gap between readings on the gateway
	// clock. Zero means adaptive: 10 × the EW mean interval, at least 2m,
	// once 5 intervals have been seen.
	After time.Duration

	// Alert overrides for this detector's lifecycle (nil: the rule's).
	For, ResolveAfter *time.Duration

	// auto: Auto replaces DefaultAutoParams when non-nil.
	Auto *AutoParams
}

// NewDetector checks s and returns a detector with fresh state.
func NewDetector(s DetectorSpec) (Detector, error) {
	switch s.Type {
	case TypeThreshold:
		return newThreshold(s)
	case TypeRate:
		if !(s.Limit > 0) || math.IsInf(s.Limit, 0) {
			return nil, fmt.Errorf("rate: limit: %v must be a positive number", s.Limit)
		}
		return &rateDet{limit: s.Limit}, nil
	case TypeZScore:
		return newZScore(s)
	case TypeMAD:
		return newMAD(s)
	case TypeFlatline:
		return newFlatline(s)
	case TypeSilence:
		if s.After < 0 {
			return nil, errors.New("silence: after: must not be negative")
		}
		return &silenceDet{after: int64(s.After)}, nil
	case TypeAuto:
		p := DefaultAutoParams()
		if s.Auto != nil {
			p = *s.Auto
		}
		if s.Threshold != 0 {
			p.Threshold = s.Threshold
		}
		return NewAuto(p)
	case TypeRange:
		return &rangeDet{}, nil
	case "":
		return nil, errors.New("type: missing")
	}
	return nil, fmt.Errorf("type: unknown detector %q (threshold, rate, zscore, mad, flatline, silence, auto)", s.Type)
}

// zScore maps |z| to a score: 0.8 at z = th, 0.5 at z ≈ 0.71·th, 0.2 at
// th/2, approaching 1 smoothly. It is 0 for z = 0 and never NaN.
func zScore(z, th float64) float64 {
	if !(z > 0) {
		return 0
	}
	if math.IsInf(z, 1) {
		return 1
	}
	r := th / z
	r *= r
	s := 1 / (1 + r*r/4)
	if !(s >= 0) { // NaN guard (th NaN cannot happen after validation)
		return 0
	}
	return s
}

// band returns center ± half, with both ends kept finite so it can be
// drawn and JSON-encoded whatever the statistics did.
func band(center, half float64) agent.Band {
	if !finite(center) {
		center = 0
	}
	if !(half >= 0) {
		half = 0
	}
	lo, hi := center-half, center+half
	if !finite(lo) {
		lo = -math.MaxFloat64
	}
	if !finite(hi) {
		hi = math.MaxFloat64
	}
	return agent.Band{Lo: lo, Hi: hi}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// appendNum writes x with up to 4 significant decimals, compactly.
func appendNum(dst []byte, x float64) []byte {
	ax := math.Abs(x)
	switch {
	case ax == 0:
		return append(dst, '0')
	case ax >= 1e6 || ax < 1e-3:
		return strconv.AppendFloat(dst, x, 'g', 4, 64)
	case ax >= 100:
		return strconv.AppendFloat(dst, math.Round(x*10)/10, 'f', -1, 64)
	default:
		return strconv.AppendFloat(dst, x, 'g', 3, 64)
	}
}

// appendDur writes d rounded to a readable unit: 30s, 5m, 1h30m.
func appendDur(dst []byte, d time.Duration) []byte {
	switch {
	case d < time.Second:
		d = d.Round(time.Millisecond)
	case d < time.Minute:
		d = d.Round(time.Second)
	case d < time.Hour:
		d = d.Round(time.Second)
	default:
		d = d.Round(time.Minute)
	}
	s := d.String()
	// "5m0s" -> "5m", "1h30m0s" -> "1h30m"
	if len(s) > 2 && s[len(s)-2:] == "0s" && (s[len(s)-3] == 'm' || s[len(s)-3] == 'h') {
		s = s[:len(s)-2]
	}
	if len(s) > 2 && s[len(s)-2:] == "0m" && s[len(s)-3] == 'h' {
		s = s[:len(s)-2]
	}
	return append(dst, s...)
}

// rangeDet scores 1 while the reading is out of its physical range; the
// engine drives it from agent.FlagOutOfRange (Update sees 1 or 0).
type rangeDet struct {
	out  bool
	last float64
}

func (d *rangeDet) Type() string { return TypeRange }
func (d *rangeDet) Update(_ int64, v float64) float64 {
	// v is the value; the engine calls setOut first.
	d.last = v
	if d.out {
		return 1
	}
	return 0
}
func (d *rangeDet) Band() (agent.Band, bool) { return agent.Band{}, false }
func (d *rangeDet) Baseline() agent.Baseline { return agent.Baseline{} }
func (d *rangeDet) AppendReason(dst []byte) []byte {
	dst = append(dst, "value "...)
	dst = appendNum(dst, d.last)
	if d.out {
		return append(dst, " outside the physical range"...)
	}
	return append(dst, " within the physical range"...)
}
func (d *rangeDet) AppendState(dst []byte) []byte        { return dst }
func (d *rangeDet) LoadState(src []byte) ([]byte, error) { return src, nil }
