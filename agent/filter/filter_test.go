package filter

import (
	"math"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

type step struct {
	t     time.Duration // reading time since start
	in    float64
	out   float64
	flags agent.Flags
	supp  bool
}

func run(t *testing.T, f *Filter, steps []step) {
	t.Helper()
	for i, s := range steps {
		smp := Sample{Value: s.in, Time: int64(s.t)}
		f.Apply(&smp)
		if math.Abs(smp.Value-s.out) > 1e-9 || smp.Flags != s.flags || smp.Suppressed != s.supp {
			t.Fatalf("step %d: Apply(%v) = %v flags %b suppressed %v; want %v flags %b suppressed %v",
				i, s.in, smp.Value, smp.Flags, smp.Suppressed, s.out, s.flags, s.supp)
		}
	}
}

func TestFilter_Apply(t *testing.T) {
	sec := time.Second
	oor := agent.FlagOutOfRange
	tests := []struct {
		name  string
		spec  Spec
		steps []step
	}{
		{"calibrate", Spec{Type: TypeCalibrate, Scale: 2, Offset: -0.5}, []step{
			{0, 1, 1.5, 0, false}, {sec, -3, -6.5, 0, false}}},
		{"calibrate zero scale is identity+offset", Spec{Type: TypeCalibrate, Offset: 1}, []step{
			{0, 1, 2, 0, false}}},
		{"clamp flags, never clips", Spec{Type: TypeClamp, Min: 0, Max: 100}, []step{
			{0, 50, 50, 0, false}, {sec, 120, 120, oor, false}, {2 * sec, -1, -1, oor, false},
			{3 * sec, 100, 100, 0, false}, {4 * sec, 0, 0, 0, false}}},
		{"median drops a spike", Spec{Type: TypeMedian, Window: 3}, []step{
			{0, 1, 1, 0, false}, {sec, 1, 1, 0, false}, {2 * sec, 50, 1, 0, false},
			{3 * sec, 1, 1, 0, false}, {4 * sec, 2, 2, 0, false}}},
		{"median of a step follows after half a window", Spec{Type: TypeMedian, Window: 3}, []step{
			{0, 0, 0, 0, false}, {sec, 0, 0, 0, false}, {2 * sec, 0, 0, 0, false},
			{3 * sec, 10, 0, 0, false}, {4 * sec, 10, 10, 0, false}}},
		{"median warm-up averages the two middle values", Spec{Type: TypeMedian, Window: 5}, []step{
			{0, 4, 4, 0, false}, {sec, 2, 3, 0, false}, {2 * sec, 9, 4, 0, false}}},
		{"ewma alpha", Spec{Type: TypeEWMA, Alpha: 0.5}, []step{
			{0, 0, 0, 0, false}, {sec, 10, 5, 0, false}, {2 * sec, 10, 7.5, 0, false}}},
		{"ewma half-life, irregular sampling", Spec{Type: TypeEWMA, HalfLife: 10 * sec}, []step{
			{0, 0, 0, 0, false},
			{10 * sec, 8, 4, 0, false},     // one half-life: half way
			{30 * sec, 4, 4, 0, false},     // already at 4
			{50 * sec, 8, 7, 0, false},     // two half-lives: 3/4 of the way
			{50 * sec, 100, 7, 0, false}}}, // same instant: no weight
		{"deadband", Spec{Type: TypeDeadband, Delta: 0.5}, []step{
			{0, 20, 20, 0, false}, {sec, 20.4, 20.4, 0, true}, {2 * sec, 19.5, 19.5, 0, true},
			{3 * sec, 20.6, 20.6, 0, false}, {4 * sec, 20.2, 20.2, 0, true}}},
		{"deadband heartbeat", Spec{Type: TypeDeadband, Delta: 1, Heartbeat: 10 * sec}, []step{
			{0, 20, 20, 0, false}, {5 * sec, 20, 20, 0, true}, {10 * sec, 20, 20, 0, false},
			{11 * sec, 20, 20, 0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.spec)
			if err != nil {
				t.Fatalf("New(%+v) = %v", tt.spec, err)
			}
			run(t, &f, tt.steps)
		})
	}
}

func TestNew_errors(t *testing.T) {
	for _, s := range []Spec{
		{},
		{Type: "smooth"},
		{Type: TypeClamp, Min: 1, Max: 1},
		{Type: TypeMedian, Window: 4},
		{Type: TypeMedian, Window: 33},
		{Type: TypeEWMA, Alpha: 1.5},
		{Type: TypeEWMA, HalfLife: -1},
		{Type: TypeDeadband, Delta: -1},
		{Type: TypeCalibrate, Scale: math.Inf(1)},
	} {
		if _, err := New(s); err == nil {
			t.Errorf("New(%+v) = nil error; want one", s)
		}
	}
}

func TestFilter_stateRoundTrip(t *testing.T) {
	for _, s := range []Spec{
		{Type: TypeCalibrate, Scale: 2},
		{Type: TypeClamp, Min: 0, Max: 1},
		{Type: TypeMedian, Window: 7},
		{Type: TypeEWMA, HalfLife: time.Minute},
		{Type: TypeDeadband, Delta: 0.3},
	} {
		t.Run(s.Type, func(t *testing.T) {
			a, _ := New(s)
			b, _ := New(s)
			for i := range 20 {
				smp := Sample{Value: math.Sin(float64(i)), Time: int64(i) * int64(time.Second)}
				a.Apply(&smp)
			}
			st := a.AppendState(nil)
			rest, err := b.LoadState(append(st, 0xAB))
			if err != nil || len(rest) != 1 || rest[0] != 0xAB {
				t.Fatalf("LoadState = %v, rest %x", err, rest)
			}
			for i := 20; i < 40; i++ {
				sa := Sample{Value: math.Cos(float64(i)), Time: int64(i) * int64(time.Second)}
				sb := sa
				a.Apply(&sa)
				b.Apply(&sb)
				if sa != sb {
					t.Fatalf("after restore, reading %d: %+v != %+v", i, sa, sb)
				}
			}
			other, _ := New(Spec{Type: TypeMedian, Window: 3})
			if s.Type != TypeMedian {
				if _, err := other.LoadState(st); err == nil {
					t.Errorf("LoadState of %s state into median = nil error", s.Type)
				}
			}
		})
	}
}

func FuzzFilter(f *testing.F) {
	f.Add(1.0, 2.0, int64(0), int64(1e9))
	f.Add(-1e300, 1e300, int64(5), int64(-5))
	f.Fuzz(func(t *testing.T, v1, v2 float64, t1, t2 int64) {
		if math.IsNaN(v1) || math.IsInf(v1, 0) || math.IsNaN(v2) || math.IsInf(v2, 0) {
			return
		}
		for _, s := range []Spec{
			{Type: TypeCalibrate, Scale: 3, Offset: 1},
			{Type: TypeClamp, Min: -5, Max: 5},
			{Type: TypeMedian, Window: 3},
			{Type: TypeEWMA, HalfLife: time.Second},
			{Type: TypeEWMA, Alpha: 0.2},
			{Type: TypeDeadband, Delta: 1, Heartbeat: time.Second},
		} {
			fl, err := New(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, smp := range []Sample{{Value: v1, Time: t1}, {Value: v2, Time: t2}, {Value: v1, Time: t2}} {
				fl.Apply(&smp)
				if math.IsNaN(smp.Value) || math.IsInf(smp.Value, 0) {
					t.Fatalf("%s: finite input %v gave %v", s.Type, v1, smp.Value)
				}
			}
		}
	})
}

func BenchmarkFilter_Apply(b *testing.B) {
	for _, s := range []Spec{
		{Type: TypeCalibrate, Scale: 2},
		{Type: TypeClamp, Min: 0, Max: 1},
		{Type: TypeMedian, Window: 5},
		{Type: TypeEWMA, HalfLife: time.Minute},
		{Type: TypeDeadband, Delta: 0.3},
	} {
		b.Run(s.Type, func(b *testing.B) {
			f, _ := New(s)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				smp := Sample{Value: float64(i % 17), Time: int64(i) * 1e9}
				f.Apply(&smp)
				i++
			}
		})
	}
}
