package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/cmd/edgeagent/internal/sdnotify"
)

// gateStage is a real agent.Stage that blocks in Process while its gate is
// closed: a wedged shard (a detector stuck in a loop, a dead lock).
type gateStage struct {
	mu   sync.Mutex
	open chan struct{}
}

func (g *gateStage) wedge()  { g.mu.Lock(); g.open = make(chan struct{}); g.mu.Unlock() }
func (g *gateStage) resume() { g.mu.Lock(); close(g.open); g.open = nil; g.mu.Unlock() }
func (g *gateStage) Process(r agent.Reading, res *agent.Result, as []agent.Alert) []agent.Alert {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return as
}
func (g *gateStage) Tick(time.Time, []agent.Alert) []agent.Alert { return nil }

// TestWatchdog_wedgedPipelineStopsThePings runs the real sd_notify loop with
// the App's health (agent.Pipeline.Stalled and storage readiness) against a
// real unixgram socket: pings flow while the pipeline moves, stop while a
// shard sits on queued readings, and resume when it moves again.
func TestWatchdog_wedgedPipelineStopsThePings(t *testing.T) {
	gate := &gateStage{}
	pl := agent.NewPipeline(agent.PipelineOptions{Shards: 1, QueueSize: 8, NewStage: func(int) agent.Stage { return gate }})
	pl.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pl.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	app := &App{pipeline: pl}
	const stall = time.Millisecond // a queued reading older than this is a wedge

	// verdicts records what the App's health said, so the test can wait on
	// the loop instead of sleeping.
	var mu sync.Mutex
	good, bad := 0, 0
	cond := sync.NewCond(&mu)
	healthy := func() error {
		err := app.progressing(stall)
		mu.Lock()
		if err != nil {
			bad++
		} else {
			good++
		}
		cond.Broadcast()
		mu.Unlock()
		return err
	}
	waitVerdicts := func(wantBad int) (int, int) {
		timedOut := false
		timer := time.AfterFunc(20*time.Second, func() { mu.Lock(); timedOut = true; cond.Broadcast(); mu.Unlock() })
		defer timer.Stop()
		mu.Lock()
		defer mu.Unlock()
		for bad < wantBad && !timedOut {
			cond.Wait()
		}
		if timedOut {
			t.Errorf("timed out waiting for %d refused pings (have %d)", wantBad, bad)
		}
		return good, bad
	}

	sock, dgrams := notifySocket(t)
	n := sdnotify.New(sock)
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() {
		sdnotify.Loop(ctx, sdnotify.LoopOptions{Notifier: n, Timeout: 30 * time.Millisecond, Healthy: healthy})
	})
	defer func() { cancel(); loop.Wait() }()

	submit := func(i int) {
		if err := pl.Submit(context.Background(), agent.Reading{Sensor: "s1", Value: float64(i), Time: time.Now(), Arrived: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	submit(0)
	pings := 0
	for pings < 3 {
		if nextDatagram(t, dgrams, "WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" }) != "" {
			pings++
		}
	}

	// Wedge: the shard takes a batch and blocks; later readings stay queued.
	gate.wedge()
	for i := 1; pl.QueueDepth() == 0; i++ {
		submit(i)
		time.Sleep(time.Millisecond) // let the shard pick up what it can
	}
	_, b0 := waitVerdicts(0)
	waitVerdicts(b0 + 3) // three refusals, at least
	if err := app.progressing(stall); err == nil || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("progressing while wedged = %v", err)
	}
	// Every ping queued before this marker matches a healthy verdict.
	if err := n.Notify("MARKER=1"); err != nil {
		t.Fatal(err)
	}
	for m := nextDatagram(t, dgrams, "marker", func(string) bool { return true }); m != "MARKER=1"; m = nextDatagram(t, dgrams, "marker", func(string) bool { return true }) {
		if m == "WATCHDOG=1" {
			pings++
		}
	}
	mu.Lock()
	goodNow := good
	mu.Unlock()
	if pings != goodNow {
		t.Fatalf("%d pings for %d healthy verdicts: pinged while the pipeline was wedged", pings, goodNow)
	}

	// Unwedged: the shard drains and the pings resume.
	gate.resume()
	nextDatagram(t, dgrams, "WATCHDOG=1 after the wedge cleared", func(m string) bool { return m == "WATCHDOG=1" })
}

func TestStatusLine_fromTheRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	processed := prometheus.NewCounter(prometheus.CounterOpts{Name: metricProcessed})
	sensors := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricSensors})
	uplink := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricUplink})
	reg.MustRegister(processed, sensors, uplink)
	now := time.Unix(1000, 0)
	s := newStatusLine(reg, true)
	s.now = func() time.Time { return now }
	s.lastT = now

	processed.Add(50)
	sensors.Set(7)
	now = now.Add(10 * time.Second)
	if got, want := s.String(), "5.0 readings/s, 7 sensors, uplink disconnected"; got != want {
		t.Errorf("status %q; want %q", got, want)
	}
	uplink.Set(1)
	now = now.Add(5 * time.Second)
	if got, want := s.String(), "0.0 readings/s, 7 sensors, uplink connected"; got != want {
		t.Errorf("status %q; want %q", got, want)
	}
	if got := newStatusLine(prometheus.NewRegistry(), false).String(); got != "uplink off" {
		t.Errorf("empty registry, no uplink: %q", got)
	}
}

func TestStallFor_andStatusEvery(t *testing.T) {
	if stallFor(0) != 10*time.Second || stallFor(30*time.Second) != 30*time.Second {
		t.Errorf("stallFor: %v, %v", stallFor(0), stallFor(30*time.Second))
	}
	if statusEvery(0) != 5*time.Second || statusEvery(time.Second) != time.Second || statusEvery(time.Minute) != 5*time.Second {
		t.Error("statusEvery")
	}
}
