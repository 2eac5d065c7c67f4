package anomaly

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// thresholdDet fires above max or below min and clears only past the clear
// levels (hysteresis). Its score is 1 while in breach, else 0.
type thresholdDet struct {
	hasMin, hasMax               bool
	min, max, clearMin, clearMax float64

	high, low bool
	since     int64 // breach start, reading time
	lastT     int64
	last      float64
}

func newThreshold(s DetectorSpec) (*thresholdDet, error) {
	d := &thresholdDet{}
	if s.Min == nil && s.Max == nil {
		return nil, errors.New("threshold: needs min or max")
	}
	if s.Max != nil {
		d.hasMax, d.max, d.clearMax = true, *s.Max, *s.Max
		if s.ClearMax != nil {
			d.clearMax = *s.ClearMax
		}
		if !finite(d.max) || !finite(d.clearMax) || d.clearMax > d.max {
			return nil, fmt.Errorf("threshold: clear_max: %v must be finite and not above max %v", d.clearMax, d.max)
		}
	} else if s.ClearMax != nil {
		return nil, errors.New("threshold: clear_max: needs max")
	}
	if s.Min != nil {
		d.hasMin, d.min, d.clearMin = true, *s.Min, *s.Min
		if s.ClearMin != nil {
			d.clearMin = *s.ClearMin
		}
		if !finite(d.min) || !finite(d.clearMin) || d.clearMin < d.min {
			return nil, fmt.Errorf("threshold: clear_min: %v must be finite and not below min %v", d.clearMin, d.min)
		}
	} else if s.ClearMin != nil {
		return nil, errors.New("threshold: clear_min: needs min")
	}
	if d.hasMin && d.hasMax && d.clearMin >= d.clearMax {
		return nil, fmt.Errorf("threshold: min: clear levels [%v, %v] leave no normal range", d.clearMin, d.clearMax)
	}
	return d, nil
}

func (d *thresholdDet) Type() string { return TypeThreshold }

func (d *thresholdDet) Update(t int64, v float64) float64 {
	if t > d.lastT {
		d.lastT = t
	}
	d.last = v
	switch {
	case d.high:
		d.high = v >= d.clearMax
	case d.hasMax && v > d.max:
		d.high, d.since = true, t
	}
	switch {
	case d.low:
		d.low = v <= d.clearMin
	case d.hasMin && v < d.min:
		d.low, d.since = true, t
	}
	if d.high || d.low {
		return 1
	}
	return 0
}

func (d *thresholdDet) Band() (agent.Band, bool) {
	return agent.Band{Lo: d.min, Hi: d.max}, d.hasMin && d.hasMax
}

func (d *thresholdDet) Baseline() agent.Baseline { return agent.Baseline{Lo: d.min, Hi: d.max} }

func (d *thresholdDet) AppendReason(dst []byte) []byte {
	dst = append(dst, "value "...)
	dst = appendNum(dst, d.last)
	switch {
	case d.high:
		dst = append(dst, " above "...)
		dst = appendNum(dst, d.max)
	case d.low:
		dst = append(dst, " below "...)
		dst = appendNum(dst, d.min)
	default:
		return append(dst, " within limits"...)
	}
	dst = append(dst, " for "...)
	return appendDur(dst, time.Duration(d.lastT-d.since))
}

func (d *thresholdDet) AppendState(b []byte) []byte {
	b = putBool(b, d.high)
	b = putBool(b, d.low)
	b = putI(b, d.since)
	b = putI(b, d.lastT)
	return putF(b, d.last)
}

func (d *thresholdDet) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.high, d.low, d.since, d.lastT, d.last = r.bool(), r.bool(), r.i(), r.i(), r.f()
	return r.b, r.err
}

// rateDet scores the change per second against a limit: 0.8 at the limit.
type rateDet struct {
	limit float64

	have  bool
	lastT int64
	last  float64
	prev  float64 // value before last
	dt    float64 // seconds between prev and last
	rate  float64
}

func (d *rateDet) Type() string { return TypeRate }

func (d *rateDet) Update(t int64, v float64) float64 {
	if !d.have {
		d.have, d.lastT, d.last = true, t, v
		return 0
	}
	dt := float64(t-d.lastT) / 1e9
	if !(dt > 0) {
		// same instant or out of order: no rate to compute, keep the
		// newer value as a correction.
		d.last = v
		return 0
	}
	d.prev, d.dt = d.last, dt
	d.rate = (v - d.last) / dt
	if !finite(d.rate) {
		d.rate = math.Copysign(math.MaxFloat64, v-d.last)
	}
	d.lastT, d.last = t, v
	return zScore(math.Abs(d.rate), d.limit)
}

func (d *rateDet) Band() (agent.Band, bool) {
	if d.dt == 0 {
		return agent.Band{}, false
	}
	return band(d.prev, d.limit*d.dt), true
}

func (d *rateDet) Baseline() agent.Baseline {
	return agent.Baseline{Lo: -d.limit, Hi: d.limit}
}

func (d *rateDet) AppendReason(dst []byte) []byte {
	if d.rate >= 0 {
		dst = append(dst, "rising "...)
	} else {
		dst = append(dst, "falling "...)
	}
	dst = appendNum(dst, math.Abs(d.rate))
	dst = append(dst, "/s, limit "...)
	dst = appendNum(dst, d.limit)
	return append(dst, "/s"...)
}

func (d *rateDet) AppendState(b []byte) []byte {
	b = putBool(b, d.have)
	b = putI(b, d.lastT)
	b = putF(b, d.last)
	b = putF(b, d.prev)
	b = putF(b, d.dt)
	return putF(b, d.rate)
}

func (d *rateDet) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.have, d.lastT, d.last, d.prev, d.dt, d.rate = r.bool(), r.i(), r.f(), r.f(), r.f(), r.f()
	return r.b, r.err
}

// flatlineDet scores 1 while the value has stayed within epsilon of the
// start of the current run for longer than the duration.
type flatlineDet struct {
	eps    float64
	dur    int64
	minN   int64
	factor float64

	have    bool
	anchor  float64
	start   int64
	lastT   int64
	n       int64
	longest int64 // longest finished run
	stuck   bool
}

func newFlatline(s DetectorSpec) (*flatlineDet, error) {
	if s.Epsilon < 0 || !finite(s.Epsilon) {
		return nil, fmt.Errorf("flatline: epsilon: %v must be a non-negative number", s.Epsilon)
	}
	if s.Duration < 0 || s.MinReadings < 0 || s.RunFactor < 0 || !finite(s.RunFactor) {
		return nil, errors.New("flatline: duration, min_readings and run_factor must not be negative")
	}
	d := &flatlineDet{eps: s.Epsilon, dur: int64(s.Duration), minN: int64(s.MinReadings), factor: s.RunFactor}
	if d.dur == 0 {
		d.dur = int64(time.Hour)
	}
	if d.minN == 0 {
		d.minN = 10
	}
	return d, nil
}

func (d *flatlineDet) Type() string { return TypeFlatline }

func (d *flatlineDet) Update(t int64, v float64) float64 {
	if !d.have {
		d.have, d.anchor, d.start, d.lastT, d.n = true, v, t, t, 1
		return 0
	}
	if math.Abs(v-d.anchor) > d.eps {
		if run := d.lastT - d.start; run > d.longest {
			d.longest = run
		}
		d.anchor, d.start, d.n = v, t, 1
	} else {
		d.n++
	}
	if t > d.lastT {
		d.lastT = t
	}
	d.stuck = d.lastT-d.start >= d.need() && d.n >= d.minN
	if d.stuck {
		return 1
	}
	return 0
}

func (d *flatlineDet) need() int64 {
	if d.factor > 0 {
		if f := d.factor * float64(d.longest); f > float64(d.dur) {
			return int64(min(f, math.MaxInt64/2))
		}
	}
	return d.dur
}

func (d *flatlineDet) Band() (agent.Band, bool) { return agent.Band{}, false }

func (d *flatlineDet) Baseline() agent.Baseline {
	return agent.Baseline{Mean: d.anchor, Lo: d.anchor - d.eps, Hi: d.anchor + d.eps, N: d.n}
}

func (d *flatlineDet) AppendReason(dst []byte) []byte {
	dst = append(dst, "value "...)
	dst = appendNum(dst, d.anchor)
	dst = append(dst, " unchanged for "...)
	dst = appendDur(dst, time.Duration(d.lastT-d.start))
	dst = append(dst, " ("...)
	dst = strconv.AppendInt(dst, d.n, 10)
	return append(dst, " readings)"...)
}

func (d *flatlineDet) AppendState(b []byte) []byte {
	b = putBool(b, d.have)
	b = putF(b, d.anchor)
	b = putI(b, d.start)
	b = putI(b, d.lastT)
	b = putI(b, d.n)
	b = putI(b, d.longest)
	return putBool(b, d.stuck)
}

func (d *flatlineDet) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.have, d.anchor, d.start, d.lastT, d.n, d.longest, d.stuck = r.bool(), r.f(), r.i(), r.i(), r.i(), r.i(), r.bool()
	return r.b, r.err
}

// silenceDet runs on the gateway clock: Update records an arrival, check
// (called from the engine's timer wheel) scores 1 once the sensor has been
// quiet for longer than after.
type silenceDet struct {
	after int64 // 0: adaptive

	lastSeen int64
	meanIv   float64 // EW mean interval between arrivals, ns
	nIv      int64
	silent   bool
	gap      int64
}

const (
	silenceMinAdaptive = int64(2 * time.Minute)
	silenceFactor      = 10
	silenceMinIv       = 5
)

func (d *silenceDet) Type() string { return TypeSilence }

// Update records an arrival at gateway time t.
func (d *silenceDet) Update(t int64, _ float64) float64 {
	if d.lastSeen != 0 {
		if iv := float64(t - d.lastSeen); iv > 0 {
			if d.nIv >= silenceMinIv && iv > 4*d.meanIv {
				iv = 4 * d.meanIv // one long gap must not teach us to wait forever
			}
			d.nIv++
			a := max(0.05, 1/float64(d.nIv))
			d.meanIv += a * (iv - d.meanIv)
		}
	}
	if t > d.lastSeen {
		d.lastSeen = t
	}
	d.silent, d.gap = false, 0
	return 0
}

// limit is the allowed gap; 0 while adaptive and still learning.
func (d *silenceDet) limit() int64 {
	if d.after > 0 {
		return d.after
	}
	if d.nIv < silenceMinIv {
		return 0
	}
	return max(silenceMinAdaptive, int64(silenceFactor*d.meanIv))
}

// deadline is when the sensor counts as silent; 0 for never.
func (d *silenceDet) deadline() int64 {
	l := d.limit()
	if l == 0 || d.lastSeen == 0 {
		return 0
	}
	return d.lastSeen + l
}

// check scores the silence at gateway time now.
func (d *silenceDet) check(now int64) float64 {
	dl := d.deadline()
	if dl == 0 || now < dl {
		d.silent = false
		return 0
	}
	d.silent, d.gap = true, now-d.lastSeen
	return 1
}

func (d *silenceDet) Band() (agent.Band, bool) { return agent.Band{}, false }

func (d *silenceDet) Baseline() agent.Baseline {
	return agent.Baseline{Mean: d.meanIv / 1e9, N: d.nIv}
}

func (d *silenceDet) AppendReason(dst []byte) []byte {
	if d.silent {
		dst = append(dst, "no reading for "...)
		return appendDur(dst, time.Duration(d.gap))
	}
	dst = append(dst, "readings arriving, limit "...)
	if l := d.limit(); l > 0 {
		return appendDur(dst, time.Duration(l))
	}
	return append(dst, "still learning"...)
}

func (d *silenceDet) AppendState(b []byte) []byte {
	b = putI(b, d.lastSeen)
	b = putF(b, d.meanIv)
	return putI(b, d.nIv)
}

func (d *silenceDet) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.lastSeen, d.meanIv, d.nIv = r.i(), r.f(), r.i()
	return r.b, r.err
}
