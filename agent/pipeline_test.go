package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
)

// recorder is an Observer that keeps what it saw, per sensor, in order.
type recorder struct {
	mu     sync.Mutex
	values map[string][]float64
	alerts []agent.Alert
	n      int
}

func (r *recorder) Observe(rs []agent.Result, as []agent.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string][]float64{}
	}
	for _, res := range rs {
		r.values[res.Sensor] = append(r.values[res.Sensor], res.Value)
		r.n++
	}
	r.alerts = append(r.alerts, as...)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func TestPipeline_Submit_keepsPerSensorOrder(t *testing.T) {
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 4, QueueSize: 8, Observers: []agent.Observer{rec}, Registerer: reg})
	p.Start()
	const sensors, each = 50, 200
	var wg sync.WaitGroup
	for s := range sensors {
		wg.Go(func() {
			for i := range each {
				r := agent.Reading{Sensor: fmt.Sprintf("s%02d", s), Value: float64(i), Time: time.Unix(int64(i), 0)}
				if err := p.Submit(context.Background(), r); err != nil {
					t.Errorf("Submit: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.count(); got != sensors*each {
		t.Fatalf("observed %d readings; want %d", got, sensors*each)
	}
	for id, vs := range rec.values {
		for i, v := range vs {
			if v != float64(i) {
				t.Fatalf("sensor %s: reading %d has value %v; order lost", id, i, v)
			}
		}
	}
	if got := counterValue(t, reg, "edgeagent_readings_processed_total"); got != sensors*each {
		t.Errorf("processed counter = %v; want %d", got, sensors*each)
	}
}

// counterValue gathers reg and returns the value of the unlabelled counter name.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestPipeline_Submit_rejectsSensorsBeyondCap(t *testing.T) {
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 2, MaxSensors: 3})
	p.Start()
	defer p.Close(context.Background())
	for i := range 3 {
		if err := p.Submit(context.Background(), agent.Reading{Sensor: fmt.Sprint(i)}); err != nil {
			t.Fatalf("sensor %d: %v", i, err)
		}
	}
	c := agent.NewCommit(1)
	err := p.Submit(context.Background(), agent.Reading{Sensor: "new", Commit: c})
	if !errors.Is(err, agent.ErrTooManySensors) {
		t.Fatalf("Submit(4th sensor) = %v; want ErrTooManySensors", err)
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Errorf("commit of a rejected reading = %v; want completed without error (acknowledged)", err)
	}
	// A known sensor still gets through.
	if err := p.Submit(context.Background(), agent.Reading{Sensor: "1"}); err != nil {
		t.Errorf("known sensor: %v", err)
	}
}

// Publishers racing with new sensors while the set of known ids grows (it
// is copied at 512, 1024, 2048 ... ids): exactly MaxSensors are admitted,
// and every admitted sensor stays admitted.
func TestPipeline_Submit_capHoldsWhileNewSensorsRace(t *testing.T) {
	const maxSensors, publishers, each = 5000, 8, 2000
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 2, MaxSensors: maxSensors})
	p.Start()
	defer p.Close(context.Background())
	admitted := make([]map[string]bool, publishers)
	var wg sync.WaitGroup
	for g := range publishers {
		admitted[g] = map[string]bool{}
		wg.Go(func() {
			for i := range each { // overlapping ranges: 9,000 ids in all
				id := fmt.Sprint("s", g*1000+i)
				err := p.Submit(context.Background(), agent.Reading{Sensor: id})
				switch {
				case err == nil:
					admitted[g][id] = true
				case !errors.Is(err, agent.ErrTooManySensors):
					t.Errorf("Submit(%s) = %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	all := map[string]bool{}
	for _, m := range admitted {
		maps.Copy(all, m)
	}
	if len(all) != maxSensors {
		t.Fatalf("%d sensors admitted; want exactly %d", len(all), maxSensors)
	}
	for i := range (publishers + 1) * 1000 {
		id := fmt.Sprint("s", i)
		err := p.Submit(context.Background(), agent.Reading{Sensor: id})
		if all[id] && err != nil || !all[id] && !errors.Is(err, agent.ErrTooManySensors) {
			t.Fatalf("again: Submit(%s) = %v; admitted before: %v", id, err, all[id])
		}
	}
}

// blockingStage holds every reading until released: a wedged shard.
type blockingStage struct{ release chan struct{} }

func (b *blockingStage) Process(r agent.Reading, res *agent.Result, as []agent.Alert) []agent.Alert {
	<-b.release
	res.Reading = r
	return as
}
func (b *blockingStage) Tick(time.Time, []agent.Alert) []agent.Alert { return nil }

func TestPipeline_Submit_backpressureInsteadOfDrop(t *testing.T) {
	st := &blockingStage{release: make(chan struct{})}
	rec := &recorder{}
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 1, QueueSize: 4,
		NewStage: func(int) agent.Stage { return st }, Observers: []agent.Observer{rec}})
	p.Start()
	// 1 in the stage + up to maxBatch drained + 4 queued; then Submit must block.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var sent int
	for ; sent < 10000; sent++ {
		if err := p.Submit(ctx, agent.Reading{Sensor: "a", Value: float64(sent)}); err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Submit = %v; want the context deadline while the shard is wedged", err)
			}
			break
		}
	}
	if sent == 10000 {
		t.Fatal("Submit never blocked on a full queue")
	}
	if err := p.Stalled(50 * time.Millisecond); err == nil {
		time.Sleep(100 * time.Millisecond)
		if err := p.Stalled(50 * time.Millisecond); err == nil {
			t.Error("Stalled = nil for a wedged shard with queued readings")
		}
	}
	close(st.release)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.count(); got != sent {
		t.Errorf("processed %d readings; want every accepted one (%d)", got, sent)
	}
}

func TestPipeline_Close_rejectsLateSubmits(t *testing.T) {
	p := agent.NewPipeline(agent.PipelineOptions{})
	p.Start()
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := agent.NewCommit(1)
	if err := p.Submit(context.Background(), agent.Reading{Sensor: "x", Commit: c}); !errors.Is(err, agent.ErrClosed) {
		t.Fatalf("Submit after Close = %v; want ErrClosed", err)
	}
	if err := c.Wait(context.Background()); !errors.Is(err, agent.ErrClosed) {
		t.Errorf("commit after Close = %v; want ErrClosed (not acknowledged)", err)
	}
}

// Sensors spread over two shards: each is found by id, with its own summary.
func TestPipeline_Inspect(t *testing.T) {
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 2})
	p.Start()
	defer p.Close(context.Background())
	ts := time.Unix(1_700_000_000, 0)
	const n = 5
	c := agent.NewCommit(n)
	for i := range n {
		r := agent.Reading{Sensor: fmt.Sprintf("t%d", i), Kind: "temperature", Value: 20 + float64(i), Time: ts, Commit: c}
		if err := p.Submit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		var got agent.SensorInfo
		id := fmt.Sprintf("t%d", i)
		if err := p.Inspect(context.Background(), id, func(info agent.SensorInfo, _ agent.Stage) { got = info }); err != nil {
			t.Fatal(err)
		}
		if got.ID != id || got.Value != 20+float64(i) || got.Kind != "temperature" || !got.Time.Equal(ts) || got.Readings != 1 {
			t.Errorf("Inspect(%s) = %+v", id, got)
		}
	}
	if err := p.Inspect(context.Background(), "nope", func(agent.SensorInfo, agent.Stage) {}); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("Inspect(unknown) = %v; want ErrNotFound", err)
	}
	all, err := p.Sensors(context.Background())
	if err != nil || len(all) != n || all[0].ID != "t0" || all[n-1].ID != "t4" {
		t.Errorf("Sensors() = %v, %v", all, err)
	}
}

func TestCommit_Wait(t *testing.T) {
	c := agent.NewCommit(3)
	c.Done(nil)
	c.Done(agent.ErrStorageFailed)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before the last Done = %v; want deadline", err)
	}
	c.Done(nil)
	if err := c.Wait(context.Background()); !errors.Is(err, agent.ErrStorageFailed) {
		t.Fatalf("Wait = %v; want the first error", err)
	}
	var nilCommit *agent.Commit
	nilCommit.Done(nil) // must not panic
}

// TestPipeline_SaveState_eachSensorItsOwn: the anomaly engine encodes every
// sensor's state into one buffer, valid only during its save call. Each
// saved state must be a copy of its own sensor's; kept as is, every state
// held the bytes of the last sensor encoded, and after a restart 4000 of
// 5000 sensors learned afresh ("trailing bytes") or took another sensor's
// baseline.
func TestPipeline_SaveState_eachSensorItsOwn(t *testing.T) {
	var engine *anomaly.Engine
	var saved map[string][]byte
	p := agent.NewPipeline(agent.PipelineOptions{Shards: 1,
		NewStage: func(int) agent.Stage {
			e, err := anomaly.New(anomaly.Options{})
			if err != nil {
				t.Fatal(err)
			}
			engine = e
			return e
		},
		SaveState: func(states map[string][]byte) error { saved = states; return nil }})
	p.Start()
	t0 := time.Now()
	sensors := []agent.Reading{
		{Sensor: "boiler-1", Kind: "temperature", Unit: "°C", Value: 61},
		{Sensor: "cellar", Kind: "humidity", Unit: "%", Value: 80},
		{Sensor: "roof/wind-speed", Kind: "speed", Unit: "m/s", Value: 4},
	}
	for i := range 50 {
		for _, r := range sensors {
			r.Value += float64(i % 7)
			r.Time = t0.Add(time.Duration(i) * time.Second)
			if err := p.Submit(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.Close(context.Background()); err != nil { // saves the state
		t.Fatal(err)
	}
	if len(saved) != len(sensors) {
		t.Fatalf("saved the state of %d sensors; want %d", len(saved), len(sensors))
	}
	engine.Snapshot(func(sensor string, state []byte) {
		if !bytes.Equal(saved[sensor], state) {
			t.Errorf("saved state of %s (%d bytes) is not its own (%d bytes)", sensor, len(saved[sensor]), len(state))
		}
	})
	fresh, err := anomaly.New(anomaly.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for sensor, state := range saved {
		if err := fresh.Restore(sensor, state); err != nil {
			t.Errorf("Restore(%s) = %v", sensor, err)
		}
	}
}
