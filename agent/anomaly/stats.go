package anomaly

import (
	"fmt"
	"math"
	"sort"

	"github.com/edgeagent/edgeagent/agent"
)

// zscoreDet keeps an exponentially weighted mean and variance. During
// warm-up the weight is 1/n (a plain running mean), then Alpha. A value
// beyond Threshold·σ is winsorized before it is learnt, so one spike does
// not blow up σ. O(1), 9 words of state.
type zscoreDet struct {
	th, alpha float64
	warm      int64

	n          int64
	mean, vari float64
	z, last    float64
	bm, bsd    float64 // the baseline the last score used
}

func newZScore(s DetectorSpec) (*zscoreDet, error) {
	d := &zscoreDet{th: s.Threshold, alpha: s.Alpha, warm: int64(s.Warmup)}
	if d.th == 0 {
		d.th = 4
	}
	if d.alpha == 0 {
		d.alpha = 0.02
	}
	if d.warm == 0 {
		d.warm = 30
	}
	if !(d.th > 0) || !finite(d.th) {
		return nil, fmt.Errorf("zscore: threshold: %v must be positive", s.Threshold)
	}
	if !(d.alpha > 0 && d.alpha < 1) {
		return nil, fmt.Errorf("zscore: alpha: %v must be in (0, 1)", s.Alpha)
	}
	if d.warm < 2 {
		return nil, fmt.Errorf("zscore: warmup: %d must be at least 2", s.Warmup)
	}
	return d, nil
}

func (d *zscoreDet) Type() string { return TypeZScore }

func (d *zscoreDet) Update(_ int64, v float64) float64 {
	d.last = v
	if d.n == 0 {
		d.n, d.mean, d.vari, d.z = 1, v, 0, 0
		return 0
	}
	sd := math.Sqrt(d.vari)
	dev := v - d.mean
	d.bm, d.bsd = d.mean, sd
	score := 0.0
	d.z = 0
	if d.n >= d.warm {
		d.z = robustZ(dev, sd, d.mean)
		score = zScore(d.z, d.th)
		if lim := d.th * sd; sd > 0 && math.Abs(dev) > lim {
			dev = math.Copysign(lim, dev)
		}
	}
	d.n++
	a := max(d.alpha, 1/float64(d.n))
	d.mean += a * dev
	d.vari = (1 - a) * (d.vari + a*dev*dev)
	if !finite(d.mean) || !finite(d.vari) { // only for values near ±MaxFloat64
		d.mean, d.vari = v, 0
	}
	return score
}

// robustZ is |dev|/sd, with a floor on sd relative to the level so a
// perfectly constant history gives a large but finite z for any change.
func robustZ(dev, sd, level float64) float64 {
	floor := 1e-9 * max(1, math.Abs(level))
	z := math.Abs(dev) / max(sd, floor)
	if !finite(z) {
		return math.MaxFloat64
	}
	return z
}

func (d *zscoreDet) Band() (agent.Band, bool) {
	if d.n < d.warm {
		return agent.Band{}, false
	}
	return band(d.mean, d.th*math.Sqrt(d.vari)), true
}

func (d *zscoreDet) Baseline() agent.Baseline {
	b := band(d.bm, d.th*d.bsd)
	return agent.Baseline{Mean: d.bm, StdDev: d.bsd, Lo: b.Lo, Hi: b.Hi, N: max(d.n-1, 0)} // readings before the last
}

func (d *zscoreDet) AppendReason(dst []byte) []byte {
	if d.n < d.warm {
		return append(dst, "warming up"...)
	}
	return appendZ(dst, d.z, d.bm, d.bsd)
}

func appendZ(dst []byte, z, mean, sd float64) []byte {
	dst = append(dst, "z="...)
	dst = appendNum(dst, math.Round(z*10)/10)
	dst = append(dst, " against mean "...)
	dst = appendNum(dst, mean)
	dst = append(dst, " σ "...)
	return appendNum(dst, sd)
}

func (d *zscoreDet) AppendState(b []byte) []byte {
	b = putI(b, d.n)
	for _, x := range [...]float64{d.mean, d.vari, d.z, d.last, d.bm, d.bsd} {
		b = putF(b, x)
	}
	return b
}

func (d *zscoreDet) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	d.n = r.i()
	d.mean, d.vari, d.z, d.last, d.bm, d.bsd = r.f(), r.f(), r.f(), r.f(), r.f(), r.f()
	return r.b, r.err
}

// madDet scores against the median and median absolute deviation of the
// last Window readings. It keeps a ring and a sorted copy: each reading
// costs two binary searches and two block moves of at most Window floats,
// and the MAD is the k-th smallest of two sorted sequences (the distances
// below and above the median), found in O(log w) without a scan.
type madDet struct {
	th   float64
	ring []float64
	srt  []float64 // sorted window, len = readings held
	pos  int

	z, last    float64
	med, scale float64
	sum, sumsq float64 // for the fallback scale when MAD is 0
}

const madMaxWindow = 1024

func newMAD(s DetectorSpec) (*madDet, error) {
	w := s.Window
	if w == 0 {
		w = 64
	}
	if w < 5 || w > madMaxWindow {
		return nil, fmt.Errorf("mad: window: %d must be between 5 and %d", s.Window, madMaxWindow)
	}
	th := s.Threshold
	if th == 0 {
		th = 4
	}
	if !(th > 0) || !finite(th) {
		return nil, fmt.Errorf("mad: threshold: %v must be positive", s.Threshold)
	}
	return &madDet{th: th, ring: make([]float64, w), srt: make([]float64, 0, w)}, nil
}

func (d *madDet) Type() string { return TypeMAD }

func (d *madDet) warm() bool { return len(d.srt) >= max(5, len(d.ring)/4) }

func (d *madDet) Update(_ int64, v float64) float64 {
	d.last = v
	score := 0.0
	d.z = 0
	if d.warm() {
		d.med, d.scale = d.stats()
		d.z = robustZ(v-d.med, d.scale, d.med)
		score = zScore(d.z, d.th)
	}
	w := len(d.ring)
	if len(d.srt) == w {
		old := d.ring[d.pos]
		i := sort.SearchFloat64s(d.srt, old)
		copy(d.srt[i:], d.srt[i+1:])
		d.srt = d.srt[:w-1]
		d.sum -= old
		d.sumsq -= old * old
	}
	i := sort.SearchFloat64s(d.srt, v)
	d.srt = d.srt[:len(d.srt)+1]
	copy(d.srt[i+1:], d.srt[i:])
	d.srt[i] = v
	d.ring[d.pos] = v
	d.pos = (d.pos + 1) % w
	d.sum += v
	d.sumsq += v * v
	return score
}

// stats returns the window's median and robust σ (1.4826·MAD; the plain σ
// of the window when more than half the readings equal the median).
func (d *madDet) stats() (med, scale float64) {
	s := d.srt
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = s[n/2-1]/2 + s[n/2]/2 // no overflow near ±MaxFloat64
	}
	c := sort.SearchFloat64s(s, med) // s[:c] < med <= s[c:]
	mad := kthDev(s, c, med, n/2)
	if n%2 == 0 {
		mad = (kthDev(s, c, med, n/2-1) + mad) / 2
	}
	scale = 1.4826 * mad
	if scale == 0 {
		m := d.sum / float64(n)
		scale = math.Sqrt(max(0, d.sumsq/float64(n)-m*m))
		if !finite(scale) { // sums overflowed: the range is a safe bound
			scale = s[n-1]/2 - s[0]/2
		}
	}
	return med, scale
}

// kthDev returns the k-th smallest (0-based) of |s[i]-med| for sorted s
// split at c: A[j] = med - s[c-1-j] and B[j] = s[c+j] - med are both
// ascending, so this is the k-th of two sorted sequences: O(log n).
func kthDev(s []float64, c int, med float64, k int) float64 {
	a, b := c, len(s)-c
	A := func(j int) float64 { return med - s[c-1-j] }
	B := func(j int) float64 { return s[c+j] - med }
	lo, hi := max(0, k+1-b), min(a, k+1)
	for lo < hi {
		i := int(uint(lo+hi) >> 1)
		if A(i) < B(k-i) {
			lo = i + 1
		} else {
			hi = i
		}
	}
	i, j := lo, k+1-lo // take i from A and j from B
	x := math.Inf(-1)
	if i > 0 {
		x = A(i - 1)
	}
	if j > 0 {
		x = max(x, B(j-1))
	}
	return x
}

func (d *madDet) Band() (agent.Band, bool) {
	if !d.warm() {
		return agent.Band{}, false
	}
	return band(d.med, d.th*d.scale), true
}

func (d *madDet) Baseline() agent.Baseline {
	b := band(d.med, d.th*d.scale)
	return agent.Baseline{Mean: d.med, StdDev: d.scale, Lo: b.Lo, Hi: b.Hi, N: int64(len(d.srt))}
}

func (d *madDet) AppendReason(dst []byte) []byte {
	if !d.warm() {
		return append(dst, "warming up"...)
	}
	dst = append(dst, "robust "...)
	dst = appendZ(dst, d.z, d.med, d.scale)
	return append(dst, " (median, MAD)"...)
}

func (d *madDet) AppendState(b []byte) []byte {
	b = putU(b, uint64(len(d.ring)))
	b = putU(b, uint64(len(d.srt)))
	b = putU(b, uint64(d.pos))
	for _, x := range d.ring {
		b = putF(b, x)
	}
	for _, x := range [...]float64{d.z, d.last, d.med, d.scale} {
		b = putF(b, x)
	}
	return b
}

func (d *madDet) LoadState(b []byte) ([]byte, error) {
	r := dec{b: b}
	w, n, pos := r.u(), r.u(), r.u()
	if r.err == nil && (w != uint64(len(d.ring)) || n > w || pos >= w) {
		return nil, fmt.Errorf("mad: %w: window differs", ErrBadState)
	}
	for i := range d.ring {
		d.ring[i] = r.f()
	}
	d.z, d.last, d.med, d.scale = r.f(), r.f(), r.f(), r.f()
	if r.err != nil {
		return nil, r.err
	}
	// the held readings are the n slots before pos; rebuild sorted copy and sums
	d.pos = int(pos)
	d.srt = d.srt[:0]
	d.sum, d.sumsq = 0, 0
	for k := 0; k < int(n); k++ {
		x := d.ring[(int(pos)-1-k+2*len(d.ring))%len(d.ring)]
		d.srt = append(d.srt, x)
		d.sum += x
		d.sumsq += x * x
	}
	sort.Float64s(d.srt)
	return r.b, nil
}
