// Package filter holds edgeagent's per-sensor stateful filters: calibrate,
// clamp, median (despike), ewma and deadband. A Filter is built once per
// sensor from a Spec; Apply is O(1) in the number of readings (median is
// O(window) with a fixed, small window) and never allocates. A Filter is not
// safe for concurrent use: the pipeline shard that owns the sensor calls it.
package filter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// Types of filter, as named in the configuration.
const (
	TypeCalibrate = "calibrate"
	TypeClamp     = "clamp"
	TypeMedian    = "median"
	TypeEWMA      = "ewma"
	TypeDeadband  = "deadband"
)

// MaxWindow is the largest median window.
const MaxWindow = 31

// ErrBadState is returned by LoadState for state that does not fit the filter.
var ErrBadState = errors.New("bad filter state")

// Spec configures one filter. Only the fields of its Type are used.
type Spec struct {
	Type string

	// calibrate: out = in*Scale + Offset. A zero Scale means 1.
	Scale, Offset float64

	// clamp: the physical range [Min, Max]. A value outside it keeps its
	// value but is flagged agent.FlagOutOfRange.
	Min, Max float64

	// median: the number of readings in the despike window (odd, 3..31;
	// zero means 5). The output lags by Window/2 readings on a ramp but
	// drops a single spike entirely.
	Window int

	// ewma: either Alpha in (0,1] per reading, or HalfLife in reading time
	// (the weight of a reading halves after HalfLife, so irregular sampling
	// works). HalfLife wins when both are set; neither means Alpha 0.3.
	Alpha    float64
	HalfLife time.Duration

	// deadband: a reading within ±Delta of the last reported one is marked
	// Suppressed. Heartbeat, when positive, reports a reading anyway once
	// Heartbeat has passed since the last reported one.
	Delta     float64
	Heartbeat time.Duration
}

// Sample is the reading as it passes through a chain of filters.
type Sample struct {
	Value      float64
	Time       int64 // reading time, Unix nanoseconds
	Flags      agent.Flags
	Suppressed bool
}

type kind uint8

const (
	kCalibrate kind = iota + 1
	kClamp
	kMedian
	kEWMA
	kDeadband
)

// Filter is one filter with its per-sensor state. The zero Filter passes
// readings unchanged.
type Filter struct {
	kind kind
	a, b float64 // calibrate scale/offset, clamp min/max, ewma alpha, deadband delta
	d    int64   // ewma half-life, deadband heartbeat (ns)

	// state
	have  bool
	last  float64 // ewma output, deadband last reported value
	lastT int64   // ewma and deadband time of last update
	n     int     // median: readings in the ring
	pos   int     // median: next ring slot
	ring  []float64
	tmp   []float64
}

// New checks s and returns a Filter with fresh state.
func New(s Spec) (Filter, error) {
	bad := func(field, format string, args ...any) (Filter, error) {
		return Filter{}, fmt.Errorf("%s: %s: "+format, append([]any{s.Type, field}, args...)...)
	}
	finite := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
		return true
	}
	switch s.Type {
	case TypeCalibrate:
		if !finite(s.Scale, s.Offset) {
			return bad("scale", "must be finite")
		}
		scale := s.Scale
		if scale == 0 {
			scale = 1
		}
		return Filter{kind: kCalibrate, a: scale, b: s.Offset}, nil
	case TypeClamp:
		if !finite(s.Min, s.Max) || s.Min >= s.Max {
			return bad("min", "%v must be below max %v", s.Min, s.Max)
		}
		return Filter{kind: kClamp, a: s.Min, b: s.Max}, nil
	case TypeMedian:
		w := s.Window
		if w == 0 {
			w = 5
		}
		if w < 3 || w > MaxWindow || w%2 == 0 {
			return bad("window", "%d must be odd and between 3 and %d", s.Window, MaxWindow)
		}
		return Filter{kind: kMedian, ring: make([]float64, w), tmp: make([]float64, 0, w)}, nil
	case TypeEWMA:
		if s.HalfLife < 0 {
			return bad("half_life", "must not be negative")
		}
		a := s.Alpha
		if a == 0 {
			a = 0.3
		}
		if s.HalfLife == 0 && (!(a > 0) || a > 1) {
			return bad("alpha", "%v must be in (0, 1]", s.Alpha)
		}
		return Filter{kind: kEWMA, a: a, d: int64(s.HalfLife)}, nil
	case TypeDeadband:
		if !finite(s.Delta) || s.Delta < 0 {
			return bad("delta", "%v must be a non-negative number", s.Delta)
		}
		if s.Heartbeat < 0 {
			return bad("heartbeat", "must not be negative")
		}
		return Filter{kind: kDeadband, a: s.Delta, d: int64(s.Heartbeat)}, nil
	case "":
		return Filter{}, errors.New("type: missing")
	default:
		return Filter{}, fmt.Errorf("type: unknown filter %q (calibrate, clamp, median, ewma, deadband)", s.Type)
	}
}

// Type reports the filter's configured type, "" for the zero Filter.
func (f *Filter) Type() string {
	switch f.kind {
	case kCalibrate:
		return TypeCalibrate
	case kClamp:
		return TypeClamp
	case kMedian:
		return TypeMedian
	case kEWMA:
		return TypeEWMA
	case kDeadband:
		return TypeDeadband
	}
	return ""
}

// Apply runs s through the filter, updating the filter's state. A finite
// value stays finite.
func (f *Filter) Apply(s *Sample) {
	switch f.kind {
	case kCalibrate:
		v := s.Value*f.a + f.b
		if !math.IsInf(v, 0) && !math.IsNaN(v) {
			s.Value = v
		}
	case kClamp:
		if s.Value < f.a || s.Value > f.b {
			s.Flags |= agent.FlagOutOfRange
		}
	case kMedian:
		s.Value = f.median(s.Value)
	case kEWMA:
		s.Value = f.ewma(s.Value, s.Time)
	case kDeadband:
		if f.have && math.Abs(s.Value-f.last) <= f.a && (f.d <= 0 || s.Time-f.lastT < f.d) {
			s.Suppressed = true
			return
		}
		f.have, f.last, f.lastT = true, s.Value, s.Time
	}
}

func (f *Filter) median(v float64) float64 {
	w := len(f.ring)
	f.ring[f.pos] = v
	f.pos++
	if f.pos == w {
		f.pos = 0
	}
	if f.n < w {
		f.n++
	}
	// insertion sort of at most MaxWindow values: no allocation, a few
	// dozen comparisons for the usual window of 5.
	t := f.tmp[:0]
	for i := 0; i < f.n; i++ {
		x := f.ring[i]
		j := len(t)
		t = append(t, x)
		for j > 0 && t[j-1] > x {
			t[j] = t[j-1]
			j--
		}
		t[j] = x
	}
	f.tmp = t
	if f.n%2 == 1 {
		return t[f.n/2]
	}
	return (t[f.n/2-1] + t[f.n/2]) / 2
}

func (f *Filter) ewma(v float64, t int64) float64 {
	if !f.have {
		f.have, f.last, f.lastT = true, v, t
		return v
	}
	a := f.a
	if f.d > 0 {
		dt := t - f.lastT
		if dt <= 0 {
			// same instant or out of order: weigh it as a reading with no
			// time behind it (a tiny step), never a negative one.
			dt = 0
		}
		a = -math.Expm1(-math.Ln2 * float64(dt) / float64(f.d))
	}
	if t > f.lastT {
		f.lastT = t
	}
	f.last += a * (v - f.last)
	return f.last
}

// AppendState appends the filter's state in a compact binary form.
func (f *Filter) AppendState(b []byte) []byte {
	b = append(b, byte(f.kind))
	switch f.kind {
	case kMedian:
		b = append(b, byte(len(f.ring)), byte(f.n), byte(f.pos))
		for _, x := range f.ring {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
	case kEWMA, kDeadband:
		var h byte
		if f.have {
			h = 1
		}
		b = append(b, h)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f.last))
		b = binary.LittleEndian.AppendUint64(b, uint64(f.lastT))
	}
	return b
}

// LoadState restores state written by AppendState into a filter built from
// the same Spec and returns the rest of b.
func (f *Filter) LoadState(b []byte) ([]byte, error) {
	if len(b) < 1 || kind(b[0]) != f.kind {
		return nil, fmt.Errorf("%s: %w: type differs", f.Type(), ErrBadState)
	}
	b = b[1:]
	switch f.kind {
	case kMedian:
		if len(b) < 3 || int(b[0]) != len(f.ring) || int(b[1]) > len(f.ring) || int(b[2]) >= len(f.ring) {
			return nil, fmt.Errorf("median: %w: window differs", ErrBadState)
		}
		n, pos := int(b[1]), int(b[2])
		b = b[3:]
		if len(b) < 8*len(f.ring) {
			return nil, fmt.Errorf("median: %w: short", ErrBadState)
		}
		for i := range f.ring {
			f.ring[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		f.n, f.pos = n, pos
		b = b[8*len(f.ring):]
	case kEWMA, kDeadband:
		if len(b) < 17 {
			return nil, fmt.Errorf("%s: %w: short", f.Type(), ErrBadState)
		}
		f.have = b[0] == 1
		f.last = math.Float64frombits(binary.LittleEndian.Uint64(b[1:]))
		f.lastT = int64(binary.LittleEndian.Uint64(b[9:]))
		b = b[17:]
	}
	return b, nil
}
