package anomaly

import (
	"fmt"
	"math"

	"github.com/edgeagent/edgeagent/agent"
)

// AutoParams are every tunable of the auto detector, in one place so the
// anomaly-quality work (edgeagent eval on NAB) can tune them without
// touching the code. DefaultAutoParams holds the defaults; the zero value
// is not usable.
type AutoParams struct {
	// Threshold is the combined robust |z| that scores 0.8 (the default
	// alert open level).
	Threshold float64
	// Alpha is the per-reading weight of the level statistics (location
	// and scale of the values); DiffAlpha that of the first differences.
	// While warming up the weight is max(Alpha, 1/n), a plain running
	// mean, so estimates converge quickly however small Alpha is.
	Alpha, DiffAlpha float64
	// DiffWeight multiplies the z of the first difference before it is
	// combined with the value z (0 ignores differences).
	DiffWeight float64
	// Clip bounds a residual to Clip·scale before it moves the location
	// (Huber-style), ScaleClip before it moves the scale. ScaleClip > Clip
	// lets the scale grow after a real level shift, so alerts resolve.
	Clip, ScaleClip float64
	// Warmup is the number of readings before auto scores at all.
	Warmup int
	// RelFloor and AbsFloor bound the scale from below at
	// RelFloor·|location| + AbsFloor (quantised or constant sensors).
	RelFloor, AbsFloor float64
}

// DefaultAutoParams returns the defaults of the auto detector.
func DefaultAutoParams() AutoParams {
	return AutoParams{
		Threshold:  5,
		Alpha:      0.01,
		DiffAlpha:  0.02,
		DiffWeight: 0.8,
		Clip:       3,
		ScaleClip:  6,
		Warmup:     20,
		RelFloor:   1e-4,
		AbsFloor:   1e-9,
	}
}

func (p AutoParams) validate() error {
	pos := func(name string, x float64) error {
		if !(x > 0) || !finite(x) {
			return fmt.Errorf("auto: %s: %v must be positive", name, x)
		}
		return nil
	}
	for _, c := range []struct {
		n string
		x float64
	}{{"threshold", p.Threshold}, {"alpha", p.Alpha}, {"diff_alpha", p.DiffAlpha}, {"clip", p.Clip}, {"scale_clip", p.ScaleClip}} {
		if err := pos(c.n, c.x); err != nil {
			return err
		}
	}
	if p.Alpha >= 1 || p.DiffAlpha >= 1 {
		return fmt.Errorf("auto: alpha: must be below 1")
	}
	if p.DiffWeight < 0 || p.RelFloor < 0 || p.AbsFloor < 0 || p.Warmup < 2 {
		return fmt.Errorf("auto: diff_weight, rel_floor, abs_floor must not be negative and warmup at least 2")
	}
	return nil
}

// ewRobust is a robust exponentially weighted location and scale: the
// location moves by a clipped residual, the scale tracks the clipped mean
// absolute deviation (×1.2533, σ for Gaussian noise).
type ewRobust struct {
	loc, mad float64
}

const madToSigma = 1.2533

func (e *ewRobust) sigma(p *AutoParams) float64 {
	return max(madToSigma*e.mad, p.RelFloor*math.Abs(e.loc)+p.AbsFloor)
}

func (e *ewRobust) learn(r, a, sigma float64, p *AutoParams) {
	lc, ls := p.Clip*sigma, p.ScaleClip*sigma
	rl := min(max(r, -lc), lc)
	ra := min(math.Abs(r), ls)
	e.loc += a * rl
	e.mad += a * (ra - e.mad)
}

// Auto is the default ensemble detector: it needs no tuning. It scores
// each reading by the larger of two robust z-scores, of the value against
// a robust EW level and of the first difference against the typical
// change, so it catches spikes, level shifts and sudden noise; its band is
// level ± Threshold·σ. O(1) per reading, about 150 bytes of state.
type Auto struct {
	p AutoParams

	n         int64
	last      float64
	val, diff ewRobust

	// last score's explanation
	z, zd        float64
	bLoc, bSigma float64
	dLoc, dSigma float64
	byDiff       bool
	lastDiff     float64
}

// NewAuto returns an auto detector with fresh state.
func NewAuto(p AutoParams) (*Auto, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &Auto{p: p}, nil
}

// Params returns the detector's parameters.
func (d *Auto) Params() AutoParams { return d.p }

func (d *Auto) Type() string { return TypeAuto }

// Update scores v and learns it. t is unused: auto works per reading.
func (d *Auto) Update(_ int64, v float64) float64 {
	p := &d.p
	if d.n == 0 {
		d.n, d.last = 1, v
		d.val = ewRobust{loc: v}
		return 0
	}
	diff := v - d.last
	d.last = v
	d.n++
	n := float64(d.n)
	sv, sd := d.val.sigma(p), d.diff.sigma(p)
	rv, rd := v-d.val.loc, diff-d.diff.loc
	d.bLoc, d.bSigma, d.dLoc, d.dSigma, d.lastDiff = d.val.loc, sv, d.diff.loc, sd, diff
	score := 0.0
	d.z, d.zd = 0, 0
	if d.n > int64(p.Warmup) {
		d.z = robustZ(rv, sv, 0)
		d.zd = robustZ(rd, sd, 0) * p.DiffWeight
		d.byDiff = d.zd > d.z
		score = zScore(max(d.z, d.zd), p.Threshold)
		d.val.learn(rv, max(p.Alpha, 1/n), sv, p)
		d.diff.learn(rd, max(p.DiffAlpha, 1/(n-1)), sd, p)
	} else {
		// warm-up: plain running means, unclipped (no scale to clip by yet)
		d.val.loc += rv / n
		d.val.mad += (math.Abs(rv) - d.val.mad) / n
		d.diff.loc += rd / (n - 1)
		d.diff.mad += (math.Abs(rd) - d.diff.mad) / (n - 1)
	}
	if !finite(d.val.loc) || !finite(d.val.mad) || !finite(d.diff.loc) || !finite(d.diff.mad) {
		// only reachable near ±MaxFloat64: start over rather than carry NaN
		d.n, d.val, d.diff = 1, ewRobust{loc: v}, ewRobust{}
	}
	return score
}

func (d *Auto) Band() (agent.Band, bool) {
	if d.n <= int64(d.p.Warmup) {
		return agent.Band{}, false
	}
	return band(d.val.loc, d.val.sigma(&d.p)*d.p.Threshold), true
}

func (d *Auto) Baseline() agent.Baseline {
	b := band(d.bLoc, d.p.Threshold*d.bSigma)
	return agent.Baseline{Mean: d.bLoc, StdDev: d.bSigma, Lo: b.Lo, Hi: b.Hi, N: max(d.n-1, 0)} // readings before the last
}

func (d *Auto) AppendReason(dst []byte) []byte {
	if d.n <= int64(d.p.Warmup) {
		return append(dst, "warming up"...)
	}
	if d.byDiff {
		dst = append(dst, "jump of "...)
		dst = appendNum(dst, d.lastDiff)
		dst = append(dst, " to "...)
		dst = appendNum(dst, d.last)
		dst = append(dst, ": "...)
		return appendZ(dst, d.zd/max(d.p.DiffWeight, 1e-300), d.dLoc, d.dSigma)
	}
	dst = append(dst, "value "...)
	dst = appendNum(dst, d.last)
	dst = append(dst, ": "...)
	return appendZ(dst, d.z, d.bLoc, d.bSigma)
}

func (d *Auto) AppendState(b []byte) []byte {
	b = putI(b, d.n)
	for _, x := range [...]float64{d.last, d.val.loc, d.val.mad, d.diff.loc, d.diff.mad,
		d.z, d.zd, d.bLoc, d.bSigma, d.dLoc, d.dSigma, d.lastDiff} {
		b = putF(b, x)
	}
	return putBool(b, d.byDiff)
}

func (d *Auto) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.n = r.i()
	for _, x := range [...]*float64{&d.last, &d.val.loc, &d.val.mad, &d.diff.loc, &d.diff.mad,
		&d.z, &d.zd, &d.bLoc, &d.bSigma, &d.dLoc, &d.dSigma, &d.lastDiff} {
		*x = r.f()
	}
	d.byDiff = r.bool()
	return r.b, r.err
}
