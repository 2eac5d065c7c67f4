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
	for _, at := range []int{3000, 4500, 6000} {
		first := -1
		for i := at; i < at+10; i++ {
			if got[i] >= 0.8 {
				first = i
				break
			}
		}
		if first < 0 {
			t.Errorf("incident at %d: no score >= 0.8 in its first 10 readings (%.3f)", at, got[at:at+10])
			continue
		}
	}
	// Outside the incidents (and their hold-off) the sensor is quiet.
	fp := 0
	for i := 200; i < len(got); i++ {
		if (i >= 3000 && i < 3100) || (i >= 4500 && i < 4600) || (i >= 6000 && i < 6160) {
			continue
		}
		if got[i] >= 0.8 {
			fp++
		}
	}
	if fp > 3 {
		t.Errorf("%d readings outside the incidents scored >= 0.8", fp)
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
