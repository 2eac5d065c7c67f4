package anomaly

import (
	"fmt"
	"math"
	"sync"

	"github.com/edgeagent/edgeagent/agent"
)

// Features of the auto detector, in the order of AutoParams.Weights.
const (
	autoLevel  = iota // value against a robust EW level
	autoDiff          // first difference against the typical change
	autoFast          // short EW mean of the values against its own baseline (sustained shifts)
	autoSlow          // value against a slow level (drifts, long-term novelty)
	autoVolume        // short EW mean of log|difference| (noise bursts, variance changes)
	autoMid           // value against a medium-speed level
	autoTrend         // short EW mean against a slow baseline of it
	autoDaily         // value against a time-of-day profile (loss of the daily pattern)
	autoFeatures
	autoRange = autoFeatures // the rare-value feature (its own state; named in reasons)
)

var autoFeatureNames = [autoFeatures + 1]string{"level", "change", "short-term mean", "long-term level", "volatility", "medium-term level", "short-term trend", "daily profile", "rare value"}

// AutoParams are every tunable of the auto detector, in one place. The
// defaults were tuned on the NAB corpus and checked on simulated gateway
// corpora (docs/anomaly-quality.md); DefaultAutoParams holds them. The zero
// value is not usable.
type AutoParams struct {
	// Threshold is the novelty ratio that scores 0.8 (the default alert
	// open level): a ratio r of 1 means the reading is as unusual as the
	// most unusual reading of the recent past.
	Threshold float64
	// Warmup is the number of readings that only initialise the
	// statistics; Quiet the number of readings before auto scores at all
	// (the peaks are learnt from PeakStart on).
	Warmup, Quiet int
	// Alphas are the per-reading weights of each feature's robust location
	// and scale (index: the feature). Smooth is the weight of the short
	// EW mean of the values (autoFast); VolSmooth that of log|difference|
	// (autoVolume).
	Alphas            [autoFeatures]float64
	Smooth, VolSmooth float64
	// Weights enable the features (0 turns one off). A feature's z is
	// divided by its own decaying peak, so a weight only matters against
	// PeakFloor.
	Weights [autoFeatures]float64
	// Clip bounds a residual to Clip·σ before it moves a location,
	// ScaleClip before it moves the scale.
	Clip, ScaleClip float64
	// PeakDecay is the per-reading decay of each feature's peak |z|;
	// PeakFloor its floor; peaks are learnt only after PeakStart readings
	// (the first estimates are noisy).
	PeakDecay, PeakFloor float64
	PeakStart            int
	// PeakCap bounds how much one reading can raise a peak (×PeakCap), so
	// one huge incident does not blind the detector to the next; 0: no
	// bound.
	PeakCap float64
	// After a reading with ratio above HoldoffAt, the next Holdoff readings
	// score HoldoffFactor times less: one incident, one high score.
	Holdoff                  int
	HoldoffAt, HoldoffFactor float64
	// HoldoffExtend restarts the hold-off at each reading above HoldoffAt
	// while it runs (one incident however long); PeakLearnScale scales how
	// much readings inside a hold-off can raise peaks (1: fully).
	HoldoffExtend  bool
	PeakLearnScale float64
	// MinZ damps the ratio of a feature whose robust |z| is below MinZ
	// (by (z/MinZ)⁴): noise that only breaks a small record does not alert.
	MinZ float64
	// DiffFloor bounds the scale of differences from below at DiffFloor
	// times the scale of the values.
	DiffFloor float64
	// DailyBins is the number of time-of-day bins of the daily profile
	// (at most 96); the profile's feature counts only while its residuals
	// are below DailyGate times the spread of the values (the sensor has a
	// daily pattern).
	DailyBins int
	DailyGate float64
	// RelFloor and AbsFloor bound each scale from below at
	// RelFloor·|location| + AbsFloor (quantised or constant sensors).
	RelFloor, AbsFloor float64
	// WarmBoost raises the bar right after Quiet: the ratio is divided by
	// 1 + WarmBoost·(1 − (n − Quiet)/WarmLen) for the next WarmLen
	// readings (the peaks are still young). 0: off.
	WarmBoost float64
	WarmLen   int
	// RangeWeight weighs the rare-value feature: how far the value lies
	// beyond the envelope of the values seen so far, in level σ; the
	// envelope shrinks towards the level by RangeDecay of its width per
	// reading. 0: off.
	RangeWeight, RangeDecay float64
	// RepeatLo: a feature's z at least RepeatLo times its uncapped
	// decaying peak is a repeat of an event seen before and is compared
	// with that peak (PeakCap does not apply). 0: off.
	RepeatLo float64
	// LocalFactor damps a ratio that is not LocalMargin times above the
	// recent largest ratio (decaying by LocalDecay per reading): a
	// plateau of near-records scores once. 0 or 1: off.
	LocalFactor, LocalMargin, LocalDecay float64
	// SustainWeight raises the ratio r while the recent ratios have been
	// high (a slow drift or a growing incident that never breaks a record
	// by much): r × (1 + SustainWeight·max(0, m − SustainLevel)), m the
	// EW mean (weight SustainAlpha) of the ratios. 0: off.
	SustainWeight, SustainLevel, SustainAlpha float64
}

// DefaultAutoParams returns the defaults of the auto detector.
func DefaultAutoParams() AutoParams {
	return AutoParams{
		Threshold:      2,
		Warmup:         20,
		Quiet:          150,
		Alphas:         [autoFeatures]float64{0.014837, 0.014062, 0.0040838, 0.0001, 0.0006846, 0.00063197, 0.00032289, 0.095753},
		Smooth:         0.032238,
		VolSmooth:      0.032836,
		Weights:        [autoFeatures]float64{3.1538, 0, 0.5114, 1.8211, 0.7012, 0, 0.20094, 1.1787},
		Clip:           6.9931,
		ScaleClip:      1.6611,
		PeakDecay:      0.99996,
		PeakFloor:      2.2315,
		PeakStart:      86,
		PeakCap:        2.2711,
		MinZ:           3.1042,
		PeakLearnScale: 1,
		Holdoff:        29,
		HoldoffExtend:  true,
		HoldoffAt:      1.0378,
		HoldoffFactor:  0.46179,
		DiffFloor:      0.013306,
		DailyBins:      48,
		DailyGate:      0.5446,
		RelFloor:       1e-4,
		AbsFloor:       1e-9,
		WarmBoost:      6.3517,
		WarmLen:        151,
		RangeWeight:    0.77304,
		RepeatLo:       0.19944,
		LocalFactor:    0.61271,
		LocalMargin:    1.0034,
		LocalDecay:     0.99199,
		SustainWeight:  0.5,
		SustainLevel:   0.5,
		SustainAlpha:   0.02,
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
	}{{"threshold", p.Threshold}, {"smooth", p.Smooth}, {"vol_smooth", p.VolSmooth}, {"clip", p.Clip},
		{"scale_clip", p.ScaleClip}, {"peak_decay", p.PeakDecay}, {"peak_floor", p.PeakFloor}, {"holdoff_at", p.HoldoffAt}} {
		if err := pos(c.n, c.x); err != nil {
			return err
		}
	}
	for i := range autoFeatures {
		if err := pos("alphas["+autoFeatureNames[i]+"]", p.Alphas[i]); err != nil {
			return err
		}
		if p.Alphas[i] >= 1 || !(p.Weights[i] >= 0) {
			return fmt.Errorf("auto: %s: alpha must be below 1 and weight not negative", autoFeatureNames[i])
		}
	}
	if p.Smooth >= 1 || p.VolSmooth >= 1 || p.PeakDecay > 1 {
		return fmt.Errorf("auto: smooth, vol_smooth must be below 1, peak_decay at most 1")
	}
	if p.DiffFloor < 0 || p.RelFloor < 0 || p.AbsFloor < 0 || p.Warmup < 2 || p.PeakCap < 0 || p.MinZ < 0 || p.Quiet < 0 || p.Holdoff < 0 ||
		p.HoldoffFactor < 0 || p.HoldoffFactor > 1 || p.DailyGate < 0 {
		return fmt.Errorf("auto: diff_floor, rel_floor, abs_floor, holdoff, daily_gate must not be negative, holdoff_factor in [0,1], warmup at least 2")
	}
	if p.WarmBoost < 0 || p.WarmLen < 0 || p.RangeWeight < 0 || p.RangeDecay < 0 || p.RangeDecay >= 1 ||
		p.RepeatLo < 0 ||
		p.LocalFactor < 0 || p.LocalFactor > 1 || p.LocalDecay < 0 || p.LocalDecay > 1 ||
		p.SustainWeight < 0 || p.SustainAlpha < 0 || p.SustainAlpha > 1 {
		return fmt.Errorf("auto: warm_boost, warm_len, range_weight, repeat_lo must not be negative, range_decay in [0,1), local_factor, local_decay and sustain_alpha in [0,1], sustain_weight not negative")
	}
	if p.DailyBins < 1 || p.DailyBins > autoMaxBins {
		return fmt.Errorf("auto: daily_bins: %d must be in 1..%d", p.DailyBins, autoMaxBins)
	}
	return nil
}

const autoMaxBins = 96

// autoFeat is a robust exponentially weighted location and scale of one
// input and the decaying peak of its z.
type autoFeat struct {
	loc, mad, peak float64
	shadow         float64 // uncapped decaying peak
}

const madToSigma = 1.2533

func (e *autoFeat) sigma(p *AutoParams) float64 {
	return max(madToSigma*e.mad, p.RelFloor*math.Abs(e.loc)+p.AbsFloor)
}

func (e *autoFeat) learn(x, a, sigma float64, p *AutoParams) {
	r := x - e.loc
	lc, ls := p.Clip*sigma, p.ScaleClip*sigma
	e.loc += a * min(max(r, -lc), lc)
	e.mad += a * (min(math.Abs(r), ls) - e.mad)
}

func (e *autoFeat) warm(x, n float64) {
	r := x - e.loc
	e.loc += r / n
	e.mad += (math.Abs(r) - e.mad) / n
}

// Auto is the default detector: it needs no tuning. It computes robust
// z-scores of several features of the stream (the value against a fast and
// a slow level, the first difference, a short-term mean, the volatility and,
// for sensors with a daily pattern, the value against its time-of-day
// profile, and how far the value lies beyond every value seen so far),
// divides each by the largest z that feature produced in the recent past
// (a decaying peak: an adaptive threshold per sensor and feature; an event
// the size of the largest one is judged against that one), and scores the
// largest ratio. The bar is raised for a while after the warm-up, a ratio
// that does not beat the recent largest is damped, and after a high score
// it holds off for a while, so an incident gives one early high score
// rather than a burst. O(1) per reading, no allocation, about 1 KB of
// state besides the shared parameters (docs/anomaly-quality.md).
type Auto struct {
	p *AutoParams // shared by every Auto with the same parameters (internAuto)

	n       int64
	last    float64
	fast    float64 // short EW mean of the values
	vol     float64 // short EW mean of log|difference|
	f       [autoFeatures]autoFeat
	holdoff int64

	daily   [autoMaxBins]float32 // time-of-day profile
	seen    [autoMaxBins]uint16
	dres    float64 // EW |daily residual|
	dspread float64 // EW |value − slow level|
	dailyPk float64
	lo, hi  float64 // envelope of the values seen
	rangePk float64
	localR  float64 // decaying recent largest ratio
	meanR   float64 // EW mean of the ratios

	// last score's explanation
	top          int
	z, ratio     float64
	bLoc, bSigma float64
}

// NewAuto returns an auto detector with fresh state.
func NewAuto(p AutoParams) (*Auto, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &Auto{p: internAuto(p)}, nil
}

// autoParams holds one copy of each parameter set in use. Every sensor has
// an Auto; with a copy of its own each reading also read ~400 bytes of
// parameters from wherever that sensor's state was, while one shared copy
// stays in the nearer caches. Sets are few (the rules') and not freed.
var autoParams = struct {
	sync.Mutex
	m map[AutoParams]*AutoParams
}{m: map[AutoParams]*AutoParams{}}

func internAuto(p AutoParams) *AutoParams {
	autoParams.Lock()
	defer autoParams.Unlock()
	q, ok := autoParams.m[p]
	if !ok {
		q = &p
		autoParams.m[p] = q
	}
	return q
}

// Params returns the detector's parameters.
func (d *Auto) Params() AutoParams { return *d.p }

func (d *Auto) Type() string { return TypeAuto }

// Update scores v at reading time t (Unix ns: only the time of day is used,
// for the daily profile) and learns it.
func (d *Auto) Update(t int64, v float64) float64 {
	p := d.p
	d.z, d.ratio = 0, 0
	if d.n == 0 {
		d.n, d.last, d.fast = 1, v, v
		for i := range d.f {
			d.f[i] = autoFeat{loc: v}
		}
		d.f[autoDiff].loc = 0
		d.lo, d.hi = v, v
		return 0
	}
	diff := v - d.last
	d.last = v
	d.n++
	n := float64(d.n)
	d.fast += p.Smooth * (v - d.fast)
	ld := math.Log(math.Abs(diff) + d.f[autoLevel].sigma(p)*1e-3 + 1e-12)
	if d.n == 2 {
		d.vol = ld
		d.f[autoVolume].loc = ld
	}
	d.vol += p.VolSmooth * (ld - d.vol)
	in := [autoFeatures]float64{v, diff, d.fast, v, d.vol, v, d.fast}
	if d.n <= int64(p.Warmup) {
		for i := range autoDaily {
			d.f[i].warm(in[i], n-1)
		}
		d.lo, d.hi = min(d.lo, v), max(d.hi, v)
		d.bLoc, d.bSigma = d.f[autoLevel].loc, d.f[autoLevel].sigma(p)
		return 0
	}
	learnPeak := d.n > int64(p.PeakStart)
	sv := d.f[autoLevel].sigma(p)
	d.bLoc, d.bSigma = d.f[autoLevel].loc, sv
	best, top, topZ := 0.0, autoLevel, 0.0
	for i := range autoDaily {
		if p.Weights[i] == 0 {
			continue
		}
		e := &d.f[i]
		s := e.sigma(p)
		if i == autoDiff {
			s = max(s, p.DiffFloor*sv)
		}
		z := robustZ(in[i]-e.loc, s, e.loc) * p.Weights[i]
		den := max(e.peak, p.PeakFloor)
		if p.RepeatLo > 0 && z >= p.RepeatLo*e.shadow {
			den = max(den, e.shadow)
		}
		if r := d.gate(z/den, z/p.Weights[i]); r > best {
			best, top, topZ = r, i, z/p.Weights[i]
		}
		if learnPeak {
			e.peak = d.nextPeak(e.peak, z)
			e.shadow = max(z, e.shadow*p.PeakDecay)
		}
		e.learn(in[i], max(p.Alphas[i], 1/n), s, p)
	}
	if p.Weights[autoDaily] > 0 {
		if z, ok := d.learnDaily(t, v); ok {
			z *= p.Weights[autoDaily]
			if r := d.gate(z/max(d.dailyPk, p.PeakFloor), z/p.Weights[autoDaily]); r > best {
				best, top, topZ = r, autoDaily, z/p.Weights[autoDaily]
			}
			if learnPeak {
				d.dailyPk = d.nextPeak(d.dailyPk, z)
			}
		}
	}
	{
		z := 0.0
		if v > d.hi {
			z, d.hi = (v-d.hi)/sv, v
		} else if v < d.lo {
			z, d.lo = (d.lo-v)/sv, v
		}
		loc := d.f[autoLevel].loc
		d.hi -= p.RangeDecay * max(d.hi-loc, 0)
		d.lo += p.RangeDecay * max(loc-d.lo, 0)
		z *= p.RangeWeight
		if r := z / max(d.rangePk, p.PeakFloor); r > best && p.RangeWeight > 0 {
			best, top, topZ = r, autoRange, z/p.RangeWeight
		}
		if learnPeak {
			d.rangePk = d.nextPeak(d.rangePk, z)
		}
	}
	if d.n <= int64(p.Quiet) {
		best, topZ = 0, 0
	} else if w := d.n - int64(p.Quiet); w < int64(p.WarmLen) {
		best /= 1 + p.WarmBoost*(1-float64(w)/float64(p.WarmLen))
	}
	if p.SustainWeight > 0 {
		r := best
		d.meanR += p.SustainAlpha * (r - d.meanR)
		best *= 1 + p.SustainWeight*max(d.meanR-p.SustainLevel, 0)
	}
	if p.LocalFactor > 0 && p.LocalFactor < 1 {
		prev := d.localR
		d.localR = max(best, d.localR*p.LocalDecay)
		if best <= p.LocalMargin*prev {
			best *= p.LocalFactor
		}
	}
	d.top, d.z, d.ratio = top, topZ, best
	s := best / (1 + best)
	switch {
	case d.holdoff > 0:
		d.holdoff--
		s *= p.HoldoffFactor
		if p.HoldoffExtend && best > p.HoldoffAt {
			d.holdoff = int64(p.Holdoff)
		}
	case best > p.HoldoffAt:
		d.holdoff = int64(p.Holdoff)
	}
	if !finite(d.f[autoLevel].loc) || !finite(d.f[autoLevel].mad) || !finite(d.f[autoVolume].loc) || !finite(d.f[autoSlow].loc) {
		// only reachable near ±MaxFloat64: start over rather than carry NaN
		p := d.p
		*d = Auto{p: p}
		return 0
	}
	return d.calibrate(s)
}

// gate damps ratio r of a feature whose unweighted z is below MinZ.
func (d *Auto) gate(r, z float64) float64 {
	if z < d.p.MinZ {
		g := z / d.p.MinZ
		g *= g
		return r * g * g
	}
	return r
}

// nextPeak is the decayed peak after a reading with weighted z.
func (d *Auto) nextPeak(peak, z float64) float64 {
	if d.holdoff > 0 {
		z *= d.p.PeakLearnScale
	}
	if d.p.PeakCap > 0 && peak > 0 {
		z = min(z, d.p.PeakCap*max(peak, d.p.PeakFloor))
	}
	return max(z, peak*d.p.PeakDecay)
}

// calibrate maps the internal score s = r/(1+r) (damped during hold-off)
// monotonically onto [0,1] so that r = Threshold scores 0.8.
func (d *Auto) calibrate(s float64) float64 {
	at := d.p.Threshold / (1 + d.p.Threshold)
	u := s / at
	u *= u
	u *= u
	out := u / (u + 0.25)
	if !(out >= 0) {
		return 0
	}
	return min(out, 1)
}

// learnDaily updates the time-of-day profile with v and returns the robust
// z of v against it; ok is false while the bin or the gate is not ready.
func (d *Auto) learnDaily(t int64, v float64) (z float64, ok bool) {
	p := d.p
	if p.Weights[autoDaily] == 0 {
		return 0, false
	}
	sec := t / 1e9 % 86400
	if sec < 0 {
		sec += 86400
	}
	b := int(sec) * p.DailyBins / 86400
	if d.seen[b] == 0 {
		d.daily[b] = float32(v)
	}
	res := v - float64(d.daily[b])
	lim := math.Inf(1)
	if d.seen[b] >= 3 {
		d.dres += 0.01 * (math.Abs(res) - d.dres)
		d.dspread += 0.01 * (math.Abs(v-d.f[autoSlow].loc) - d.dspread)
		if d.dres < p.DailyGate*d.dspread {
			z, ok = math.Abs(res)/max(madToSigma*d.dres, 1e-9), true
		}
		lim = 3 * madToSigma * max(d.dres, 1e-9)
	}
	d.daily[b] += float32(p.Alphas[autoDaily] * min(max(res, -lim), lim))
	if d.seen[b] < math.MaxUint16 {
		d.seen[b]++
	}
	if !finite(float64(d.daily[b])) {
		d.daily[b], d.seen[b] = float32(v), 1
	}
	return z, ok
}

func (d *Auto) Band() (agent.Band, bool) {
	if d.n <= int64(d.p.Warmup) {
		return agent.Band{}, false
	}
	e := &d.f[autoLevel]
	k := d.p.Threshold * max(e.peak, d.p.PeakFloor) / max(d.p.Weights[autoLevel], 1e-9)
	s := e.sigma(d.p) * min(k, 1e6)
	return agent.Band{Lo: e.loc - s, Hi: e.loc + s}, true
}

func (d *Auto) Baseline() agent.Baseline {
	return agent.Baseline{Mean: d.bLoc, StdDev: d.bSigma,
		Lo: d.bLoc - d.p.Threshold*d.bSigma, Hi: d.bLoc + d.p.Threshold*d.bSigma, N: d.n}
}

func (d *Auto) AppendReason(dst []byte) []byte {
	if d.n <= int64(max(d.p.Warmup, d.p.Quiet)) {
		return append(dst, "warming up"...)
	}
	dst = append(dst, autoFeatureNames[d.top]...)
	dst = append(dst, " of value "...)
	dst = appendNum(dst, d.last)
	dst = append(dst, ": "...)
	dst = appendZ(dst, d.z, d.bLoc, d.bSigma)
	dst = append(dst, ", "...)
	dst = appendNum(dst, math.Round(d.ratio*100)/100)
	return append(dst, "× the recent peak"...)
}

func (d *Auto) AppendState(b []byte) []byte {
	b = putI(b, d.n)
	b = putI(b, d.holdoff)
	for _, x := range [...]float64{d.last, d.fast, d.vol, d.dres, d.dspread, d.dailyPk, d.z, d.ratio, d.bLoc, d.bSigma} {
		b = putF(b, x)
	}
	for i := range d.f {
		b = putF(b, d.f[i].loc)
		b = putF(b, d.f[i].mad)
		b = putF(b, d.f[i].peak)
	}
	b = putU(b, uint64(d.top))
	b = putU(b, uint64(d.p.DailyBins))
	for i := range d.p.DailyBins {
		b = putF(b, float64(d.daily[i]))
		b = putU(b, uint64(d.seen[i]))
	}
	for _, x := range [...]float64{d.lo, d.hi, d.rangePk, d.localR, d.meanR} {
		b = putF(b, x)
	}
	for i := range d.f {
		b = putF(b, d.f[i].shadow)
	}
	return b
}

func (d *Auto) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.n = r.i()
	d.holdoff = r.i()
	for _, x := range [...]*float64{&d.last, &d.fast, &d.vol, &d.dres, &d.dspread, &d.dailyPk, &d.z, &d.ratio, &d.bLoc, &d.bSigma} {
		*x = r.f()
	}
	for i := range d.f {
		d.f[i].loc = r.f()
		d.f[i].mad = r.f()
		d.f[i].peak = r.f()
	}
	top := r.u()
	d.top = int(min(top, autoRange))
	bins := r.u()
	if r.err == nil && (bins != uint64(d.p.DailyBins) || top > autoRange) {
		return nil, fmt.Errorf("%w: auto: %d daily bins, want %d", ErrBadState, bins, d.p.DailyBins)
	}
	for i := range d.p.DailyBins {
		d.daily[i] = float32(r.f())
		d.seen[i] = uint16(min(r.u(), math.MaxUint16))
	}
	for _, x := range [...]*float64{&d.lo, &d.hi, &d.rangePk, &d.localR, &d.meanR} {
		*x = r.f()
	}
	for i := range d.f {
		d.f[i].shadow = r.f()
	}
	return r.b, r.err
}
