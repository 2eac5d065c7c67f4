package anomaly

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

// gatewaySeries is a daily cycle with noise, a machine switching on and
// off, a spike at 3000, a level shift at 4500 and a noise burst at 6000,
// one reading a minute.
func gatewaySeries(n int) []float64 {
	rng := rand.New(rand.NewPCG(5, 6))
	vs := make([]float64, n)
	on := false
	for i := range vs {
		if i%37 == 0 {
			on = !on
		}
		v := 20 + 3*math.Sin(2*math.Pi*float64(i)/1440) + rng.NormFloat64()*0.2
		if on {
			v += 1
		}
		switch {
		case i == 3000:
			v += 15
		case i >= 4500:
			v += 6
		}
		if i >= 6000 && i < 6060 {
			v += rng.NormFloat64() * 5
		}
		vs[i] = v
	}
	return vs
}

func TestAuto_incidentsScoreEarlyAndOnce(t *testing.T) {
	d, err := NewAuto(DefaultAutoParams())
	if err != nil {
		t.Fatal(err)
	}
	vs := gatewaySeries(8000)
	got := make([]float64, len(vs))
	for i, v := range vs {
		got[i] = d.Update(int64(i)*int64(time.Minute), v)
		if !(got[i] >= 0 && got[i] <= 1) {
			t.Fatalf("reading %d scored %v", i, got[i])
		}
	}
	// After the first day (whose trough is new) and outside the incidents
	// (and their hold-off) the sensor is quiet.
	quiet := 0.0
	for i := 1440; i < len(got); i++ {
		if (i >= 3000 && i < 3100) || (i >= 4500 && i < 4600) || (i >= 6000 && i < 6160) {
			continue
		}
		quiet = max(quiet, got[i])
	}
	if quiet >= 0.6 {
		t.Errorf("a reading outside the incidents scored %.3f", quiet)
	}
	// Each incident scores above every quiet reading within its first
	// readings. The spike is huge: it scores above the alert level. The
	// shift after it is half as large, so it scores lower (auto is
	// relative to the sensor's recent past).
	for _, c := range []struct {
		at   int
		want float64
	}{{3000, 0.8}, {4500, 0.6}, {6000, 0.5}} {
		peak := 0.0
		for i := c.at; i < c.at+10; i++ {
			peak = max(peak, got[i])
		}
		if peak < c.want || peak <= quiet {
			t.Errorf("incident at %d: peak score %.3f in its first 10 readings, want >= %v and above the quiet %.3f (%.3f)", c.at, peak, c.want, quiet, got[c.at:c.at+10])
		}
	}
}

// TestAuto_sustainRaisesGrowingIncidents: the sustain term leaves a quiet
// sensor alone (its EW mean ratio stays below SustainLevel, so the scores
// equal those without the term) and raises an incident whose ratios stay
// high for long: noise whose spread grows slowly, each reading a record by
// a little, reaches its best score much earlier than without the term.
func TestAuto_sustainRaisesGrowingIncidents(t *testing.T) {
	p0 := DefaultAutoParams()
	p0.SustainWeight = 0
	d, _ := NewAuto(DefaultAutoParams())
	d0, _ := NewAuto(p0)
	rng := rand.New(rand.NewPCG(1, 2))
	const onset = 5000
	var got, got0 []float64
	raised := false
	for i := range 7000 {
		sd := 1.0
		if i >= onset {
			sd += float64(i-onset) * 0.003
		}
		v := 10 + rng.NormFloat64()*sd
		tt := int64(i) * int64(time.Minute)
		s, s0 := d.Update(tt, v), d0.Update(tt, v)
		if i < onset {
			if d.meanR > d.p.SustainLevel {
				t.Fatalf("reading %d of stationary noise: EW mean ratio %.3f above the sustain level", i, d.meanR)
			}
			if s != s0 {
				t.Fatalf("reading %d of stationary noise scored %v, %v without the sustain term", i, s, s0)
			}
			continue
		}
		raised = raised || d.meanR > d.p.SustainLevel
		got, got0 = append(got, s), append(got0, s0)
	}
	if !raised {
		t.Fatal("the EW mean ratio never rose above the sustain level during the growing incident")
	}
	best0, at0 := 0.0, 0
	for i, s := range got0 {
		if s > best0 {
			best0, at0 = s, i
		}
	}
	at := -1
	for i, s := range got {
		if s >= best0 {
			at = i
			break
		}
	}
	if at < 0 || at >= at0/2 {
		t.Errorf("the growing incident reached %.3f (its best without the sustain term, reading %d after the onset) at reading %d with it, want well before", best0, at0, at)
	}
}

func TestAuto_stateRoundTrip(t *testing.T) {
	p := DefaultAutoParams()
	a, _ := NewAuto(p)
	vs := gatewaySeries(3000)
	for i, v := range vs[:2000] {
		a.Update(int64(i)*int64(time.Minute), v)
	}
	st := a.AppendState(nil)
	b, _ := NewAuto(p)
	rest, err := b.LoadState(append(st, 7))
	if err != nil || !bytes.Equal(rest, []byte{7}) {
		t.Fatalf("LoadState: rest %v, err %v", rest, err)
	}
	for i, v := range vs[2000:] {
		tt := int64(2000+i) * int64(time.Minute)
		if x, y := a.Update(tt, v), b.Update(tt, v); x != y {
			t.Fatalf("reading %d: restored detector scored %v, original %v", 2000+i, y, x)
		}
	}
	if _, err := b.LoadState(st[:len(st)-3]); err == nil {
		t.Error("truncated state loaded")
	}
}

// BenchmarkAuto_Update reports ns and allocations per reading of the
// default auto detector on a gateway-like series, and its memory per
// sensor (the detector value; the snapshot is smaller).
func BenchmarkAuto_Update(b *testing.B) {
	vs := gatewaySeries(8192)
	d, _ := NewAuto(DefaultAutoParams())
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Update(int64(i)*int64(time.Minute), vs[i&8191])
		i++
	}
	b.ReportMetric(float64(unsafe.Sizeof(*d)), "bytes/sensor")
	b.ReportMetric(float64(len(d.AppendState(nil))), "snapshot-bytes")
}

// A spike that repeats at the same size is news once: the later ones score
// below the first and below the alert level (0.8), while a spike twice as
// large after them still alerts.
func TestAuto_repeatedSpikeScoresOnce(t *testing.T) {
	d, err := NewAuto(DefaultAutoParams())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var spikes []float64
	for i := range 6000 {
		v := 10 + rng.NormFloat64()*0.5
		big := i == 5500
		if (i >= 1000 && i%500 == 0 && i < 5500) || big {
			v += 10
			if big {
				v += 10
			}
		}
		s := d.Update(int64(i)*int64(time.Minute), v)
		if (i >= 1000 && i%500 == 0) || big {
			spikes = append(spikes, s)
		}
	}
	first, big := spikes[0], spikes[len(spikes)-1]
	if first < 0.8 || big < 0.8 {
		t.Errorf("first spike scored %.3f, the larger last one %.3f, want both >= 0.8 (%.3f)", first, big, spikes)
	}
	for k, s := range spikes[2 : len(spikes)-1] {
		if s >= 0.8 || s >= first {
			t.Errorf("repeat %d of the spike scored %.3f, want below 0.8 and below the first %.3f (%.3f)", k+2, s, first, spikes)
		}
	}
}

// NewAuto rejects out-of-range values of the newer parameters.
func TestAuto_invalidParams(t *testing.T) {
	for _, f := range []func(*AutoParams){
		func(p *AutoParams) { p.WarmBoost = -1 },
		func(p *AutoParams) { p.RangeDecay = 1 },
		func(p *AutoParams) { p.RepeatLo = -0.1 },
		func(p *AutoParams) { p.LocalFactor = 1.5 },
		func(p *AutoParams) { p.LocalDecay = -1 },
	} {
		p := DefaultAutoParams()
		f(&p)
		if _, err := NewAuto(p); err == nil {
			t.Errorf("NewAuto accepted %+v", p)
		}
	}
}

// Autos with the same parameters share one copy of them; the copy is the
// caller's value at NewAuto.
func TestNewAuto_sharesParams(t *testing.T) {
	p := DefaultAutoParams()
	a, err := NewAuto(p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewAuto(DefaultAutoParams())
	if a.p != b.p {
		t.Error("two Autos with the default parameters hold two copies")
	}
	p.Threshold = 3
	if a.Params().Threshold != DefaultAutoParams().Threshold {
		t.Error("changing the caller's AutoParams changed the detector's")
	}
	c, _ := NewAuto(p)
	if c.p == a.p || c.Params().Threshold != 3 {
		t.Errorf("Auto with Threshold 3 shares the defaults (%v)", c.Params().Threshold)
	}
}
