package anomaly

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

func f64(x float64) *float64 { return &x }

// series helpers: values at one reading per second unless noted.
type pt struct {
	t time.Duration
	v float64
}

func regular(vs ...float64) []pt {
	out := make([]pt, len(vs))
	for i, v := range vs {
		out[i] = pt{time.Duration(i) * time.Second, v}
	}
	return out
}

func noise(seed uint64, n int, mean, sd float64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]float64, n)
	for i := range out {
		out[i] = mean + sd*r.NormFloat64()
	}
	return out
}

func scores(t *testing.T, d Detector, pts []pt) []float64 {
	t.Helper()
	out := make([]float64, len(pts))
	for i, p := range pts {
		out[i] = d.Update(int64(p.t), p.v)
	}
	return out
}

func mustDet(t testing.TB, s DetectorSpec) Detector {
	t.Helper()
	d, err := NewDetector(s)
	if err != nil {
		t.Fatalf("NewDetector(%+v) = %v", s, err)
	}
	return d
}

func TestThreshold_hysteresis(t *testing.T) {
	d := mustDet(t, DetectorSpec{Type: TypeThreshold, Max: f64(90), ClearMax: f64(85), Min: f64(0)})
	pts := regular(80, 91, 88, 86, 84, 89, 95, -1, 0.5)
	want := []float64{0, 1, 1, 1, 0, 0, 1, 1, 0}
	got := scores(t, d, pts[:7])
	got = append(got, d.Update(int64(7*time.Second), -1)) // below min; high cleared? -1 < 85 so high clears, low sets
	got = append(got, d.Update(int64(8*time.Second), 0.5))
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("scores = %v; want %v", got, want)
		}
	}
	d = mustDet(t, DetectorSpec{Type: TypeThreshold, Max: f64(60)})
	scores(t, d, []pt{{0, 50}, {10 * time.Second, 87.2}, {40 * time.Second, 87.2}})
	if r := string(d.AppendReason(nil)); r != "value 87.2 above 60 for 30s" {
		t.Errorf("reason = %q", r)
	}
}

func TestRate(t *testing.T) {
	d := mustDet(t, DetectorSpec{Type: TypeRate, Limit: 2})
	// a ramp of 1/s at irregular spacing, then a jump of 10 in 1s
	pts := []pt{{0, 0}, {1 * time.Second, 1}, {4 * time.Second, 4}, {4500 * time.Millisecond, 4.5}, {10 * time.Second, 10}, {11 * time.Second, 20}}
	got := scores(t, d, pts)
	for i, s := range got[:5] {
		if s >= 0.5 {
			t.Errorf("ramp reading %d scored %v", i, s)
		}
	}
	if got[5] < 0.8 {
		t.Errorf("jump scored %v; want >= 0.8", got[5])
	}
	if r := string(d.AppendReason(nil)); r != "rising 10/s, limit 2/s" {
		t.Errorf("reason = %q", r)
	}
	// same instant: no rate
	if s := d.Update(int64(11*time.Second), 100); s != 0 {
		t.Errorf("same-instant reading scored %v", s)
	}
}

func TestZScore_spikeAndWarmup(t *testing.T) {
	d := mustDet(t, DetectorSpec{Type: TypeZScore, Warmup: 30})
	vs := noise(1, 300, 21.4, 0.3)
	vs[200] = 21.4 + 6*0.3*1.5 // a 9σ spike
	got := scores(t, d, regular(vs...))
	for i := range 30 {
		if got[i] != 0 {
			t.Fatalf("warm-up reading %d scored %v", i, got[i])
		}
	}
	if got[200] < 0.8 {
		t.Errorf("spike scored %v", got[200])
	}
	fp := 0
	for i, s := range got {
		if i != 200 && s >= 0.8 {
			fp++
		}
	}
	if fp > 1 {
		t.Errorf("%d false positives on Gaussian noise", fp)
	}
	vs = noise(2, 100, 21.4, 0.3)
	d = mustDet(t, DetectorSpec{Type: TypeZScore})
	scores(t, d, regular(vs...))
	d.Update(int64(100*time.Second), 23.3)
	if r := string(d.AppendReason(nil)); !strings.HasPrefix(r, "z=") || !strings.Contains(r, "against mean 21.") || !strings.Contains(r, " σ 0.") {
		t.Errorf("reason = %q", r)
	}
}

func TestMAD(t *testing.T) {
	d := mustDet(t, DetectorSpec{Type: TypeMAD, Window: 32})
	// heavy tails: Laplace-ish noise with occasional ±3 outliers in 100 readings
	r := rand.New(rand.NewPCG(3, 3))
	vs := make([]float64, 400)
	for i := range vs {
		vs[i] = 10 + r.ExpFloat64()*0.2*float64(1-2*(i%2))
	}
	vs[300] = 30
	got := scores(t, d, regular(vs...))
	if got[300] < 0.8 {
		t.Errorf("outlier scored %v", got[300])
	}
	for i := range 7 {
		if got[i] != 0 {
			t.Errorf("warm-up reading %d scored %v", i, got[i])
		}
	}
	// a step: fires at first, then the window learns the new level
	d = mustDet(t, DetectorSpec{Type: TypeMAD, Window: 16})
	step := append(noise(4, 50, 0, 1), noise(5, 50, 20, 1)...)
	got = scores(t, d, regular(step...))
	if got[50] < 0.8 {
		t.Errorf("step scored %v", got[50])
	}
	if got[99] >= 0.5 {
		t.Errorf("after the window moved, the new level still scores %v", got[99])
	}
}

func TestKthDev_bruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 2000 {
		n := 1 + r.IntN(40)
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(r.IntN(10)) // many ties
		}
		sort.Float64s(s)
		med := s[r.IntN(n)]
		if r.IntN(2) == 0 {
			med += 0.5
		}
		c := sort.SearchFloat64s(s, med)
		devs := make([]float64, n)
		for i, x := range s {
			devs[i] = math.Abs(x - med)
		}
		sort.Float64s(devs)
		k := r.IntN(n)
		if got := kthDev(s, c, med, k); got != devs[k] {
			t.Fatalf("kthDev(%v, med %v, k %d) = %v; want %v", s, med, k, got, devs[k])
		}
	}
}

func TestFlatline(t *testing.T) {
	min := time.Minute
	d := mustDet(t, DetectorSpec{Type: TypeFlatline, Duration: 5 * min, MinReadings: 3, Epsilon: 0.01})
	pts := []pt{{0, 1}, {1 * min, 2}, {2 * min, 3}, // moving
		{3 * min, 5}, {4 * min, 5.005}, {6 * min, 5}, {8 * min, 5}, // stuck since 3m, 5m at 8m
		{20 * min, 5}, // a gap: still stuck
		{21 * min, 6}} // moves again
	got := scores(t, d, pts)
	want := []float64{0, 0, 0, 0, 0, 0, 1, 1, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("scores = %v; want %v", got, want)
		}
	}
	// run factor: a sensor that is often stuck for 9m needs a run of 18m
	d = mustDet(t, DetectorSpec{Type: TypeFlatline, Duration: 9*min + 30*time.Second, MinReadings: 1, RunFactor: 2})
	var p []pt
	for i := range 30 {
		p = append(p, pt{time.Duration(i) * min, float64(i / 10)}) // runs of 9 minutes
	}
	p = append(p, pt{40 * min, 2}) // 20m run of value 2... > 2×9m
	got = scores(t, d, p)
	for i, s := range got[:21] {
		if s != 0 {
			t.Fatalf("reading %d scored %v with run factor", i, s)
		}
	}
	if got[len(got)-1] != 1 {
		t.Errorf("20m run scored %v; want 1", got[len(got)-1])
	}
	if r := string(d.AppendReason(nil)); r != "value 2 unchanged for 20m (11 readings)" {
		t.Errorf("reason = %q", r)
	}
}

func TestAuto(t *testing.T) {
	sp := DetectorSpec{Type: TypeAuto}
	t.Run("noise has few false positives", func(t *testing.T) {
		d := mustDet(t, sp)
		got := scores(t, d, regular(noise(11, 5000, 100, 2)...))
		fp := 0
		for _, s := range got {
			if s >= 0.8 {
				fp++
			}
		}
		if fp > 2 {
			t.Errorf("%d of 5000 readings of Gaussian noise scored >= 0.8", fp)
		}
	})
	t.Run("spike", func(t *testing.T) {
		d := mustDet(t, sp)
		vs := noise(12, 500, 20, 0.5)
		vs[400] = 30
		got := scores(t, d, regular(vs...))
		if got[400] < 0.8 {
			t.Errorf("spike scored %v", got[400])
		}
		if got[402] >= 0.5 {
			t.Errorf("two readings after the spike scored %v", got[402])
		}
	})
	t.Run("level shift fires, then is learnt", func(t *testing.T) {
		d := mustDet(t, sp)
		vs := append(noise(13, 400, 20, 0.5), noise(14, 3000, 26, 0.5)...)
		got := scores(t, d, regular(vs...))
		if got[400] < 0.8 {
			t.Errorf("shift scored %v", got[400])
		}
		if got[len(got)-1] >= 0.5 {
			t.Errorf("2600 readings after the shift it still scores %v", got[len(got)-1])
		}
	})
	t.Run("slow ramp is not an anomaly", func(t *testing.T) {
		d := mustDet(t, sp)
		vs := noise(15, 2000, 0, 1)
		for i := range vs {
			vs[i] += float64(i) * 0.002
		}
		for i, s := range scores(t, d, regular(vs...)) {
			if s >= 0.95 {
				t.Fatalf("ramp reading %d scored %v", i, s)
			}
		}
	})
	t.Run("warm-up", func(t *testing.T) {
		d := mustDet(t, sp)
		for i, s := range scores(t, d, regular(0, 100, -50, 1e6, 3)) {
			if s != 0 {
				t.Errorf("warm-up reading %d scored %v", i, s)
			}
		}
		if _, ok := d.Band(); ok {
			t.Error("band during warm-up")
		}
	})
	t.Run("reason", func(t *testing.T) {
		d := mustDet(t, sp)
		scores(t, d, regular(noise(16, 200, 21.4, 0.3)...))
		d.Update(int64(200*time.Second), 25)
		if r := string(d.AppendReason(nil)); !strings.Contains(r, "z=") || !strings.Contains(r, "σ") {
			t.Errorf("reason = %q", r)
		}
	})
}

func TestAuto_stateSize(t *testing.T) {
	d, _ := NewAuto(DefaultAutoParams())
	if n := len(d.AppendState(nil)); n > 4096 {
		t.Errorf("auto state is %d bytes", n)
	}
}

// allSpecs is one spec per detector type, for property tests and benchmarks.
func allSpecs() []DetectorSpec {
	return []DetectorSpec{
		{Type: TypeThreshold, Max: f64(10), Min: f64(-10), ClearMax: f64(8)},
		{Type: TypeRate, Limit: 1},
		{Type: TypeZScore},
		{Type: TypeMAD, Window: 16},
		{Type: TypeFlatline, Duration: time.Second, MinReadings: 2, RunFactor: 2},
		{Type: TypeSilence},
		{Type: TypeAuto},
	}
}

// checkScores feeds vs (one per second, plus jitter from ts) to every
// detector and fails on a score outside [0,1] or NaN.
func checkScores(t *testing.T, vs []float64, ts []int64) {
	for _, sp := range allSpecs() {
		d := mustDet(t, sp)
		for i, v := range vs {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			tt := int64(i) * int64(time.Second)
			if i < len(ts) {
				tt = ts[i]
			}
			s := d.Update(tt, v)
			if !(s >= 0 && s <= 1) {
				t.Fatalf("%s: Update(%d, %v) = %v after %v", sp.Type, tt, v, s, vs[:i])
			}
			if b, ok := d.Band(); ok && (math.IsNaN(b.Lo) || math.IsNaN(b.Hi)) {
				t.Fatalf("%s: band %v", sp.Type, b)
			}
			d.AppendReason(nil)
		}
	}
}

func TestDetectors_scoresInRange(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 21))
	gens := map[string]func(int) float64{
		"constant":    func(int) float64 { return 5 },
		"huge":        func(i int) float64 { return math.MaxFloat64 * float64(1-2*(i%2)) },
		"tiny":        func(i int) float64 { return 5e-324 * float64(i%3) },
		"random walk": func(i int) float64 { return float64(i) + r.NormFloat64()*100 },
		"cauchy":      func(int) float64 { return math.Tan(math.Pi * (r.Float64() - 0.5)) },
		"steps":       func(i int) float64 { return float64((i / 50) * 1000) },
		"zero then huge": func(i int) float64 {
			if i < 100 {
				return 0
			}
			return 1e300
		},
	}
	for name, g := range gens {
		t.Run(name, func(t *testing.T) {
			vs := make([]float64, 400)
			ts := make([]int64, 400)
			var tt int64
			for i := range vs {
				vs[i] = g(i)
				tt += int64(r.IntN(3)) * int64(time.Second) // irregular, with repeats
				ts[i] = tt
			}
			checkScores(t, vs, ts)
		})
	}
}

func FuzzDetectors(f *testing.F) {
	f.Add(1.0, 2.0, 3.0, int64(1e9))
	f.Add(0.0, 1e308, -1e308, int64(0))
	f.Add(5e-324, 0.0, 5e-324, int64(-1))
	f.Fuzz(func(t *testing.T, a, b, c float64, dt int64) {
		vs := make([]float64, 0, 90)
		ts := make([]int64, 0, 90)
		for i := range 30 {
			vs = append(vs, a, b, c)
			ts = append(ts, int64(3*i)*dt, int64(3*i+1)*dt, int64(3*i+2)*dt)
		}
		checkScores(t, vs, ts)
	})
}

func TestDetectors_stateRoundTrip(t *testing.T) {
	for _, sp := range allSpecs() {
		t.Run(sp.Type, func(t *testing.T) {
			a, b := mustDet(t, sp), mustDet(t, sp)
			vs := noise(31, 200, 5, 2)
			for i, v := range vs[:100] {
				a.Update(int64(i)*int64(time.Second), v)
			}
			rest, err := b.LoadState(append(a.AppendState(nil), 7))
			if err != nil || len(rest) != 1 {
				t.Fatalf("LoadState = %v, rest %v", err, rest)
			}
			for i, v := range vs[100:] {
				tt := int64(100+i) * int64(time.Second)
				if sa, sb := a.Update(tt, v), b.Update(tt, v); math.Abs(sa-sb) > 1e-9 {
					t.Fatalf("reading %d after restore: %v != %v", i, sa, sb)
				}
			}
			if _, err := b.LoadState(a.AppendState(nil)[:3]); err == nil && sp.Type != TypeRange {
				t.Error("LoadState of truncated state = nil error")
			}
		})
	}
}

func TestNewDetector_errors(t *testing.T) {
	for _, s := range []DetectorSpec{
		{},
		{Type: "magic"},
		{Type: TypeThreshold},
		{Type: TypeThreshold, Max: f64(5), ClearMax: f64(6)},
		{Type: TypeThreshold, Min: f64(5), ClearMin: f64(4)},
		{Type: TypeThreshold, ClearMax: f64(4), Min: f64(0)},
		{Type: TypeThreshold, Min: f64(5), Max: f64(4)},
		{Type: TypeRate},
		{Type: TypeZScore, Alpha: 1},
		{Type: TypeMAD, Window: 2},
		{Type: TypeFlatline, Epsilon: -1},
		{Type: TypeSilence, After: -1},
		{Type: TypeAuto, Threshold: -1},
	} {
		if _, err := NewDetector(s); err == nil {
			t.Errorf("NewDetector(%+v) = nil error", s)
		}
	}
}

func BenchmarkDetector_Update(b *testing.B) {
	vs := noise(41, 4096, 20, 1)
	for _, sp := range append(allSpecs(), DetectorSpec{Type: TypeMAD, Window: 256}) {
		name := sp.Type
		if sp.Window > 0 {
			name += "/w" + strconv.Itoa(sp.Window)
		}
		b.Run(name, func(b *testing.B) {
			d := mustDet(b, sp)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d.Update(int64(i)*1e9, vs[i&4095])
				i++
			}
		})
	}
}
