package anomaly

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/filter"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0 }
	}
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	return e
}

// feed is a tiny driver: readings at reading time = arrival time. Like a
// pipeline shard, it keeps each sensor's slot (agent.SlotStage).
type feed struct {
	t      testing.TB
	e      *Engine
	alerts []agent.Alert
	res    agent.Result
	slots  map[string]*any
}

func (f *feed) at(sensor string, at time.Time, v float64) agent.Result {
	if f.slots == nil {
		f.slots = make(map[string]*any)
	}
	held := f.slots[sensor]
	if held == nil {
		held = new(any)
		f.slots[sensor] = held
	}
	r := agent.Reading{Sensor: sensor, Kind: "temperature", Unit: "°C", Value: v, Time: at, Arrived: at}
	f.alerts = f.e.ProcessSlot(r, held, &f.res, f.alerts)
	return f.res
}

func (f *feed) tick(at time.Time) { f.alerts = f.e.Tick(at, f.alerts) }

func (f *feed) states(detector string) []string {
	var out []string
	for _, a := range f.alerts {
		if detector == "" || a.Detector == detector {
			out = append(out, string(a.State))
		}
	}
	return out
}

func eq(a []string, b ...string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestEngine_ruleMatching(t *testing.T) {
	e := mustEngine(t, Options{Rules: []Rule{
		{Name: "boilers", Sensor: "boiler-*", Kind: "temperature", Detectors: []DetectorSpec{{Type: TypeThreshold, Max: f64(90)}}},
		{Name: "humid", Kind: "humidity", Detectors: []DetectorSpec{{Type: TypeZScore}}},
		{Name: "boilers-any", Sensor: "boiler-*", Detectors: []DetectorSpec{{Type: TypeAuto}}},
	}})
	tests := []struct{ sensor, kind, rule string }{
		{"boiler-1", "temperature", "boilers"},
		{"boiler-2", "pressure", "boilers-any"},
		{"kitchen", "humidity", "humid"},
		{"boiler-3", "humidity", "humid"}, // first match wins
		{"kitchen", "temperature", "default"},
		{"a/b", "", "default"},
	}
	var res agent.Result
	for _, tt := range tests {
		id := tt.sensor + "." + tt.kind
		if tt.sensor == "boiler-1" || tt.sensor == "boiler-2" || tt.sensor == "boiler-3" {
			id = tt.sensor
		}
		e.Process(agent.Reading{Sensor: id, Kind: tt.kind, Value: 1, Time: t0, Arrived: t0}, &res, nil)
		st, ok := e.Inspect(id)
		if !ok || st.Rule != tt.rule {
			t.Errorf("sensor %q kind %q: rule %q (ok %v); want %q", id, tt.kind, st.Rule, ok, tt.rule)
		}
	}
	if _, ok := e.Inspect("nope"); ok {
		t.Error("Inspect of an unknown sensor: ok")
	}
	st, _ := e.Inspect("a/b.")
	var names []string
	for _, d := range st.Detectors {
		names = append(names, d.Name)
	}
	if !eq(names, "auto", "flatline", "silence") {
		t.Errorf("default detectors %v", names)
	}
}

func TestEngine_restamp(t *testing.T) {
	e := mustEngine(t, Options{})
	var res agent.Result
	boot := time.Unix(42, 0)
	e.Process(agent.Reading{Sensor: "s", Value: 1, Time: boot, Arrived: t0}, &res, nil)
	if !res.Time.Equal(t0) || res.Flags&agent.FlagRestamped == 0 {
		t.Errorf("1970 reading: time %v flags %b; want %v restamped", res.Time, res.Flags, t0)
	}
	e.Process(agent.Reading{Sensor: "s", Value: 1, Time: t0.Add(time.Second), Arrived: t0}, &res, nil)
	if !res.Time.Equal(t0.Add(time.Second)) || res.Flags&agent.FlagRestamped != 0 {
		t.Errorf("sane reading: time %v flags %b", res.Time, res.Flags)
	}
	// gateway clock not set either: nothing better to use
	e.Process(agent.Reading{Sensor: "s", Value: 1, Time: boot, Arrived: time.Unix(50, 0)}, &res, nil)
	if !res.Time.Equal(boot) || res.Flags&agent.FlagRestamped != 0 {
		t.Errorf("both clocks unset: time %v flags %b", res.Time, res.Flags)
	}
	// no arrival time: the engine's clock
	e.Process(agent.Reading{Sensor: "s", Value: 1, Time: boot}, &res, nil)
	if !res.Time.Equal(t0) || !res.Arrived.Equal(t0) {
		t.Errorf("no arrival: time %v arrived %v", res.Time, res.Arrived)
	}
}

// TestEngine_defaultRuleIncidents runs the default rule on three sensors:
// one with a spike, one that gets stuck, one that falls silent. Each
// incident gives exactly one firing and one resolved alert with one ID.
func TestEngine_defaultRuleIncidents(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := mustEngine(t, Options{Gateway: "gw1", Metrics: m})
	f := &feed{t: t, e: e}
	r := rand.New(rand.NewPCG(1, 2))
	step := 10 * time.Second
	var now time.Time
	for i := range 2000 {
		now = t0.Add(time.Duration(i) * step)
		spike := 21.4 + 0.3*r.NormFloat64()
		if i == 1500 {
			spike = 40
		}
		f.at("spiky", now, spike)
		stuck := 50 + r.NormFloat64()
		if i >= 1000 && i < 1600 { // stuck for 100 minutes
			stuck = 49.5
		}
		f.at("stuck", now, stuck)
		if i < 1200 || i >= 1300 { // silent for 1000s
			f.at("quiet", now, 10+r.NormFloat64())
		}
		f.tick(now)
	}
	check := func(sensor, detector string) {
		t.Helper()
		var got []agent.Alert
		for _, a := range f.alerts {
			if a.Sensor == sensor {
				got = append(got, a)
			}
		}
		if len(got) != 2 || got[0].State != agent.AlertFiring || got[1].State != agent.AlertResolved {
			t.Fatalf("%s: alerts %+v; want one firing, one resolved", sensor, got)
		}
		a, b := got[0], got[1]
		if a.Detector != detector || b.Detector != detector || a.ID != b.ID || a.Gateway != "gw1" || a.Kind != "temperature" || a.Unit != "°C" {
			t.Errorf("%s: %+v / %+v", sensor, a, b)
		}
		if id, err := uuid.Parse(a.ID); err != nil || id.Version() != 7 {
			t.Errorf("%s: id %q is not a UUIDv7 (%v)", sensor, a.ID, err)
		}
		if b.ResolvedAt.IsZero() || !b.StartedAt.Equal(a.StartedAt) || a.Reason == "" || !strings.HasPrefix(b.Reason, a.Reason) {
			t.Errorf("%s: timestamps/reasons: %+v / %+v", sensor, a, b)
		}
		t.Logf("%s: %s | %s", sensor, a.Reason, b.Reason)
	}
	check("spiky", "auto")
	check("quiet", "silence")
	var stuck []agent.Alert
	for _, a := range f.alerts {
		if a.Sensor == "stuck" && a.Detector == "flatline" {
			stuck = append(stuck, a)
		}
	}
	if len(stuck) != 2 || stuck[0].State != agent.AlertFiring || stuck[1].State != agent.AlertResolved ||
		!strings.HasPrefix(stuck[0].Reason, "value 49.5 unchanged for 1h") {
		t.Errorf("stuck: %+v", stuck)
	}
	for _, a := range f.alerts {
		if a.Sensor == "quiet" && a.State == agent.AlertFiring && !strings.HasPrefix(a.Reason, "no reading for ") {
			t.Errorf("silence reason %q", a.Reason)
		}
	}
	if v := testutil.ToFloat64(m.open); v != 0 {
		t.Errorf("alerts_open = %v after all resolved", v)
	}
	firing := 0.0
	for _, a := range f.alerts {
		if a.State == agent.AlertFiring {
			firing++
		}
	}
	if v := testutil.ToFloat64(m.firing); v != firing || v < 3 {
		t.Errorf("alerts_total{firing} = %v; %v emitted", v, firing)
	}
	if n, err := testutil.GatherAndCount(reg, "edgeagent_alerts_total", "edgeagent_alerts_open"); err != nil || n != 4 {
		t.Errorf("registered series = %d, %v", n, err)
	}
}

func TestEngine_silenceTimerWheel(t *testing.T) {
	e := mustEngine(t, Options{Rules: []Rule{{Name: "dead", Sensor: "*",
		Detectors: []DetectorSpec{{Type: TypeSilence, After: 5 * time.Minute}}}}})
	f := &feed{t: t, e: e}
	f.at("a", t0, 1)
	f.at("b", t0.Add(2*time.Minute), 1)
	for s := 1; s <= 299; s++ {
		f.tick(t0.Add(time.Duration(s) * time.Second))
	}
	if len(f.alerts) != 0 {
		t.Fatalf("alerts before 5m: %+v", f.alerts)
	}
	f.tick(t0.Add(5 * time.Minute))
	if !eq(f.states(""), "firing") || f.alerts[0].Sensor != "a" || f.alerts[0].Reason != "no reading for 5m" {
		t.Fatalf("at 5m: %+v", f.alerts)
	}
	// a long jump of the gateway clock (suspend, NTP step): b fires too
	f.tick(t0.Add(3 * time.Hour))
	if !eq(f.states(""), "firing", "firing") || f.alerts[1].Sensor != "b" {
		t.Fatalf("after the jump: %+v", f.alerts)
	}
	f.at("a", t0.Add(3*time.Hour+time.Second), 1)
	if !eq(f.states(""), "firing", "firing", "resolved") || f.alerts[2].Sensor != "a" {
		t.Fatalf("after a reading: %+v", f.alerts)
	}
	// a, reading again, is rescheduled: silent again 5m later, not before
	f.tick(t0.Add(3*time.Hour + 5*time.Minute))
	if len(f.alerts) != 3 {
		t.Fatalf("early refire: %+v", f.alerts[3:])
	}
	f.tick(t0.Add(3*time.Hour + 5*time.Minute + time.Second))
	if !eq(f.states(""), "firing", "firing", "resolved", "firing") {
		t.Fatalf("refire: %+v", f.alerts)
	}
}

func TestEngine_silenceAdaptive(t *testing.T) {
	e := mustEngine(t, Options{})
	f := &feed{t: t, e: e}
	for i := range 10 {
		f.at("s", t0.Add(time.Duration(i)*time.Minute), float64(i))
	}
	last := t0.Add(9 * time.Minute)
	f.tick(last.Add(9 * time.Minute)) // 10× the 1m interval not reached
	if len(f.alerts) != 0 {
		t.Fatalf("early: %+v", f.alerts)
	}
	f.tick(last.Add(10 * time.Minute))
	if !eq(f.states("silence"), "firing") {
		t.Fatalf("adaptive silence: %+v", f.alerts)
	}
}

func TestEngine_thresholdFor(t *testing.T) {
	e := mustEngine(t, Options{Rules: []Rule{{Name: "boilers", Sensor: "boiler-*",
		Filters:   []filter.Spec{{Type: filter.TypeCalibrate, Scale: 1, Offset: -0.5}},
		Detectors: []DetectorSpec{{Type: TypeThreshold, Max: f64(60), ClearMax: f64(55), For: durp(30 * time.Second)}}}}})
	f := &feed{t: t, e: e}
	vs := []float64{50, 70, 80, 87.7, 87.7, 58, 56, 50}
	for i, v := range vs {
		res := f.at("boiler-1", t0.Add(time.Duration(i)*10*time.Second), v)
		if res.Raw != v || res.Value != v-0.5 {
			t.Fatalf("calibrate: raw %v value %v", res.Raw, res.Value)
		}
	}
	if !eq(f.states(""), "firing", "resolved") {
		t.Fatalf("alerts %+v", f.alerts)
	}
	a := f.alerts[0]
	if a.Reason != "value 87.2 above 60 for 30s" || a.FirstValue != 69.5 || a.Value != 87.2 || a.Score != 1 {
		t.Errorf("firing alert %+v", a)
	}
	if !a.StartedAt.Equal(t0.Add(10*time.Second)) || !a.UpdatedAt.Equal(t0.Add(40*time.Second)) {
		t.Errorf("started %v updated %v", a.StartedAt, a.UpdatedAt)
	}
	if r := f.alerts[1]; !r.ResolvedAt.Equal(t0.Add(70*time.Second)) || r.Reason != "value 87.2 above 60 for 30s; now value 49.5 within limits" {
		t.Errorf("resolved alert %+v", r)
	}
}

func TestEngine_Inspect(t *testing.T) {
	e := mustEngine(t, Options{Rules: []Rule{{Name: "hot", Sensor: "*",
		Detectors: []DetectorSpec{{Type: TypeThreshold, Min: f64(0), Max: f64(60)}, {Type: TypeZScore, Warmup: 5}},
		Alert:     AlertParams{For: time.Minute}}}})
	f := &feed{t: t, e: e}
	for i := range 10 {
		f.at("s", t0.Add(time.Duration(i)*time.Second), 20+float64(i%2))
	}
	f.at("s", t0.Add(10*time.Second), 70)
	st, ok := e.Inspect("s")
	if !ok || st.Value != 70 || st.Raw != 70 || !st.LastTime.Equal(t0.Add(10*time.Second)) || len(st.Detectors) != 2 {
		t.Fatalf("Inspect = %+v, %v", st, ok)
	}
	th, z := st.Detectors[0], st.Detectors[1]
	if th.Name != "threshold" || th.Score != 1 || th.State != "pending" || th.AlertID != "" || !th.Since.Equal(t0.Add(10*time.Second)) ||
		th.Band != (agent.Band{Lo: 0, Hi: 60}) || !th.HasBand || th.Reason != "value 70 above 60 for 0s" {
		t.Errorf("threshold state %+v", th)
	}
	if z.Type != TypeZScore || !z.HasBand || z.Score < 0.8 || !strings.HasPrefix(z.Reason, "z=") || z.Baseline.N != 10 {
		t.Errorf("zscore state %+v", z)
	}
	f.at("s", t0.Add(80*time.Second), 70)
	st, _ = e.Inspect("s")
	if th := st.Detectors[0]; th.State != "firing" || th.AlertID != f.alerts[0].ID {
		t.Errorf("after for: %+v, alerts %+v", th, f.alerts)
	}
}

func TestEngine_silenceRepeatAndFor(t *testing.T) {
	e := mustEngine(t, Options{Rules: []Rule{{Name: "r", Sensor: "*",
		Detectors: []DetectorSpec{{Type: TypeSilence, After: time.Minute, For: durp(30 * time.Second)}},
		Alert:     AlertParams{Repeat: 10 * time.Minute}}}})
	f := &feed{t: t, e: e}
	f.at("s", t0, 1)
	for s := 1; s <= 1800; s++ {
		f.tick(t0.Add(time.Duration(s) * time.Second))
	}
	// silent at 60s, firing at 90s, repeated at 690s and 1290s
	if !eq(f.states(""), "firing", "firing", "firing") {
		t.Fatalf("alerts %+v", f.alerts)
	}
	for i, want := range []time.Duration{90, 690, 1290} {
		if a := f.alerts[i]; !a.UpdatedAt.Equal(t0.Add(want*time.Second)) || a.ID != f.alerts[0].ID {
			t.Errorf("alert %d at %v id %s", i, a.UpdatedAt.Sub(t0), a.ID)
		}
	}
}

func durp(d time.Duration) *time.Duration { return &d }

func TestEngine_clampAndDeadband(t *testing.T) {
	e := mustEngine(t, Options{Rules: []Rule{{Name: "r",
		Filters: []filter.Spec{{Type: filter.TypeClamp, Min: 0, Max: 100}, {Type: filter.TypeDeadband, Delta: 1}},
		Alert:   AlertParams{FlapCount: -1}}}})
	f := &feed{t: t, e: e}
	res := f.at("s", t0, 50)
	if res.Suppressed || res.Score != 0 {
		t.Fatalf("first: %+v", res)
	}
	res = f.at("s", t0.Add(time.Second), 50.5)
	if !res.Suppressed {
		t.Errorf("within deadband not suppressed")
	}
	res = f.at("s", t0.Add(2*time.Second), 150)
	if res.Suppressed || res.Flags&agent.FlagOutOfRange == 0 || res.Score != 1 || res.Detector != "range" || res.Value != 150 {
		t.Errorf("out of range: %+v", res)
	}
	if !eq(f.states(""), "firing") || f.alerts[0].Reason != "value 150 outside the physical range" {
		t.Errorf("alerts %+v", f.alerts)
	}
}

func TestNew_errors(t *testing.T) {
	for _, rs := range [][]Rule{
		{{Name: "x", Sensor: "[", Detectors: []DetectorSpec{{Type: TypeAuto}}}},
		{{Name: "x", Detectors: []DetectorSpec{{Type: "nope"}}}},
		{{Name: "x", Filters: []filter.Spec{{Type: "nope"}}}},
		{{Name: "x", Detectors: []DetectorSpec{{Type: TypeSilence}, {Type: TypeSilence}}}},
		{{Name: "default", Kind: "t"}},
		{{Name: "x", Alert: AlertParams{Open: 0.5, Close: 0.7}}},
	} {
		if _, err := New(Options{Rules: rs}); err == nil {
			t.Errorf("New(%+v) = nil error", rs)
		}
	}
}

func TestEngine_snapshotRoundTrip(t *testing.T) {
	rules := []Rule{{Name: "r", Sensor: "m-*",
		Filters:   []filter.Spec{{Type: filter.TypeMedian, Window: 3}, {Type: filter.TypeEWMA, HalfLife: time.Minute}},
		Detectors: []DetectorSpec{{Type: TypeMAD, Window: 16}, {Type: TypeZScore}, {Type: TypeRate, Limit: 5}, {Type: TypeThreshold, Max: f64(30)}}}}
	a := mustEngine(t, Options{Rules: rules})
	fa := &feed{t: t, e: a}
	r := rand.New(rand.NewPCG(5, 5))
	series := make([]float64, 600)
	for i := range series {
		series[i] = 20 + r.NormFloat64()
		if i > 250 && i < 320 {
			series[i] = 40 // an open incident across the snapshot
		}
	}
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 5 * time.Second) }
	for i := range 300 {
		fa.at("m-1", at(i), series[i])
		fa.at("d-1", at(i), series[i])
	}
	snap := map[string][]byte{}
	a.Snapshot(func(s string, b []byte) { snap[s] = append([]byte(nil), b...) })
	if len(snap) != 2 {
		t.Fatalf("snapshot of %d sensors", len(snap))
	}
	b := mustEngine(t, Options{Rules: rules})
	fb := &feed{t: t, e: b}
	// b's own state of both sensors, held in fb's slots: Restore replaces it
	fb.at("m-1", at(0), 0)
	fb.at("d-1", at(0), 0)
	for s, st := range snap {
		if err := b.Restore(s, st); err != nil {
			t.Fatalf("Restore(%s) = %v", s, err)
		}
	}
	fa.alerts, fb.alerts = nil, nil
	for i := 300; i < 600; i++ {
		for _, s := range []string{"m-1", "d-1"} {
			ra, rb := fa.at(s, at(i), series[i]), fb.at(s, at(i), series[i])
			if ra != rb {
				t.Fatalf("%s reading %d: %+v != %+v", s, i, ra, rb)
			}
		}
	}
	if len(fa.alerts) == 0 || len(fa.alerts) != len(fb.alerts) {
		t.Fatalf("alerts %d vs %d", len(fa.alerts), len(fb.alerts))
	}
	carried := 0
	for i := range fa.alerts {
		x, y := fa.alerts[i], fb.alerts[i]
		if x.Detector == "threshold" && x.State == agent.AlertResolved {
			carried++ // the incident open across the snapshot keeps its ID
		} else {
			x.ID, y.ID = "", "" // new incidents get new IDs
		}
		if x != y {
			t.Errorf("alert %d: %+v != %+v", i, x, y)
		}
	}
	if carried != 1 {
		t.Errorf("%d threshold incidents resolved after the restore; want 1", carried)
	}
	// a rule change makes the state unusable: an error, and fresh state
	c := mustEngine(t, Options{Rules: []Rule{{Name: "other", Sensor: "m-*"}}})
	if err := c.Restore("m-1", snap["m-1"]); err == nil {
		t.Error("Restore under another rule = nil error")
	}
	if err := c.Restore("d-1", snap["d-1"][:20]); err == nil {
		t.Error("Restore of truncated state = nil error")
	}
	if err := c.Restore("d-1", nil); err == nil {
		t.Error("Restore of empty state = nil error")
	}
}

func FuzzEngine_Restore(f *testing.F) {
	e := mustEngine(f, Options{})
	var res agent.Result
	for i := range 50 {
		e.Process(agent.Reading{Sensor: "s", Value: float64(i % 7), Time: t0.Add(time.Duration(i) * time.Second)}, &res, nil)
	}
	e.Snapshot(func(_ string, b []byte) { f.Add(append([]byte(nil), b...)) })
	f.Fuzz(func(t *testing.T, b []byte) {
		e := mustEngine(t, Options{})
		if e.Restore("s", b) == nil {
			var res agent.Result
			e.Process(agent.Reading{Sensor: "s", Value: 1, Time: t0}, &res, nil)
			if math.IsNaN(res.Score) || res.Score < 0 || res.Score > 1 {
				t.Fatalf("score %v after restore", res.Score)
			}
		}
	})
}

func TestEngine_Process_noAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := mustEngine(t, Options{Rules: []Rule{{Name: "filtered",
		Filters:   []filter.Spec{{Type: filter.TypeCalibrate, Scale: 1.01}, {Type: filter.TypeMedian}, {Type: filter.TypeDeadband, Delta: 0.01}},
		Detectors: DefaultRule().Detectors, Alert: DefaultRule().Alert}}})
	var res agent.Result
	alerts := make([]agent.Alert, 0, 16)
	r := agent.Reading{Sensor: "s", Value: 1, Time: t0, Arrived: t0}
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		r.Value = math.Sin(float64(i))
		r.Time = t0.Add(time.Duration(i) * time.Second)
		r.Arrived = r.Time
		alerts = e.Process(r, &res, alerts[:0])
		i++
	})
	if n != 0 {
		t.Errorf("Process allocates %v times per reading", n)
	}
}

// BenchmarkEngine_Process takes 1000 sensors in turn, or shuffled as
// readings arrive at a gateway: then each reading finds its sensor's state
// out of the nearer caches.
func BenchmarkEngine_Process(b *testing.B) {
	for _, bc := range []struct {
		name     string
		rules    []Rule
		shuffled bool
	}{
		{"default", nil, false},
		{"default/shuffled", nil, true},
		{"default+filters", []Rule{{Name: "f",
			Filters:   []filter.Spec{{Type: filter.TypeCalibrate, Scale: 1.01}, {Type: filter.TypeMedian}, {Type: filter.TypeDeadband, Delta: 0.01}},
			Detectors: DefaultRule().Detectors, Alert: DefaultRule().Alert}}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := mustEngine(b, Options{Rules: bc.rules})
			const sensors = 1000
			ids := make([]string, sensors)
			for i := range ids {
				ids[i] = "sensor-" + string(rune('a'+i%26)) + uuid.NewString()[:8]
			}
			vs := noise(9, 4096, 20, 1)
			order := make([]int, 1<<16)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range order {
				if order[i] = i % sensors; bc.shuffled {
					order[i] = rng.IntN(sensors)
				}
			}
			var res agent.Result
			alerts := make([]agent.Alert, 0, 16)
			for i, id := range ids { // sensors exist before timing starts
				e.Process(agent.Reading{Sensor: id, Value: vs[i], Time: t0, Arrived: t0}, &res, nil)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				at := t0.Add(time.Duration(1+i/sensors) * time.Second)
				alerts = e.Process(agent.Reading{Sensor: ids[order[i&(1<<16-1)]], Value: vs[i&4095], Time: at, Arrived: at}, &res, alerts[:0])
				i++
			}
		})
	}
}

// BenchmarkEngine_newSensor reports the heap held per sensor of the
// default rule (bytes/sensor) and the cost of creating one.
func BenchmarkEngine_newSensor(b *testing.B) {
	e := mustEngine(b, Options{})
	var res agent.Result
	ids := make([]string, 0, 1<<16)
	for i := range cap(ids) {
		ids = append(ids, "sensor/"+strconv.Itoa(i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		if n == len(ids) {
			e = mustEngine(b, Options{})
			n = 0
		}
		e.Process(agent.Reading{Sensor: ids[n], Value: 1, Time: t0, Arrived: t0}, &res, nil)
		n++
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n > 1000 {
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "bytes/sensor")
	}
	runtime.KeepAlive(e)
}

// BenchmarkEngine_Tick: 10,000 sensors of the default rule reading every
// 10s; one op is one second of gateway time (readings, then Tick).
func BenchmarkEngine_Tick(b *testing.B) {
	e := mustEngine(b, Options{})
	const sensors = 10000
	ids := make([]string, sensors)
	for i := range ids {
		ids[i] = "s" + strconv.Itoa(i)
	}
	var res agent.Result
	alerts := make([]agent.Alert, 0, 64)
	sec := 0
	step := func() {
		now := t0.Add(time.Duration(sec) * time.Second)
		for i := sec % 10; i < sensors; i += 10 {
			alerts = e.Process(agent.Reading{Sensor: ids[i], Value: float64(i % 7), Time: now, Arrived: now}, &res, alerts[:0])
		}
		alerts = e.Tick(now, alerts[:0])
		sec++
	}
	for range 100 {
		step()
	}
	b.ReportAllocs()
	for b.Loop() {
		step()
	}
}
