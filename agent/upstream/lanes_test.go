package upstream

import (
	"fmt"
	"github.com/edgeagent/edgeagent/broker/mosquittotest"
	"log/slog"
	"net"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// startMochi runs an in-process mochi broker on a free loopback port.
func startMochi(t *testing.T) string {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := s.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return "tcp://" + addr
}

func rollupPayload(sensor string, i int) []byte {
	return fmt.Appendf(nil, `{"id":"roll-%s-%d","sensor":%q,"min":1,"max":2,"mean":1.5,"n":60}`, sensor, i, sensor)
}

// TestUplink_lanes: against a mochi broker, rollups go to
// {prefix}/{gw}/rollups/{sensor} when forwarded, and are dropped unsent and
// counted as evicted when not; alerts always go.
func TestUplink_lanes(t *testing.T) {
	url := startMochi(t)
	for _, tc := range []struct {
		name    string
		forward []string
	}{
		{"rollups forwarded", []string{"alerts", "rollups", "status"}},
		{"rollups not forwarded", []string{"alerts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := fmt.Sprintf("gw%d", len(tc.forward))
			sub := subscribe(t, url, "edgeagent/"+gw+"/#")
			ob := openStore(t, "")
			as, _ := alertBurst(gw, 50, 2)
			for i := range as {
				as[i].Gateway = gw
			}
			for i := range 20 {
				if err := ob.OutboxEnqueue(LaneRollup, "s00", rollupPayload("s00", i)); err != nil {
					t.Fatal(err)
				}
			}
			ob.write(t, as)
			u, reg := startUplink(t, ob, Options{URL: url, Gateway: gw, Forward: tc.forward})
			waitFor(t, 20*time.Second, "outbox empty", func() bool { return depth(ob) == 0 })
			rolled := len(tc.forward) == 3
			wantDistinct := 50
			if rolled {
				wantDistinct += 20
			}
			sub.waitDistinct(wantDistinct, 10*time.Second)
			time.Sleep(100 * time.Millisecond) // nothing else may arrive
			sub.mu.Lock()
			rollups := sub.topics["edgeagent/"+gw+"/rollups/s00"]
			status := len(sub.status)
			sub.mu.Unlock()
			ev := testutil.ToFloat64(u.m.evicted[LaneRollup])
			pub := counter(t, reg, "edgeagent_upstream_published_total")
			if rolled {
				if rollups != 20 || ev != 0 || pub != 70 || status == 0 {
					t.Errorf("rollups received %d, evicted %v, published %v, status msgs %d; want 20, 0, 70, ≥1", rollups, ev, pub, status)
				}
			} else if rollups != 0 || ev != 20 || pub != 50 || status != 0 {
				t.Errorf("rollups received %d, evicted %v, published %v, status msgs %d; want 0, 20, 50, 0", rollups, ev, pub, status)
			}
			if sub.distinct() != wantDistinct {
				t.Errorf("distinct ids = %d, want %d", sub.distinct(), wantDistinct)
			}
		})
	}
}

// TestUplink_boundsEvictRollupsNeverAlerts: with the broker unreachable and
// the outbox over MaxBytes, the uplink evicts rollups oldest first and keeps
// every alert.
func TestUplink_boundsEvictRollupsNeverAlerts(t *testing.T) {
	ob := openStore(t, "")
	as, _ := alertBurst("b", 40, 2)
	ob.write(t, as[:20])
	for i := range 30 {
		if err := ob.OutboxEnqueue(LaneRollup, "s01", rollupPayload("s01", i)); err != nil {
			t.Fatal(err)
		}
	}
	ob.write(t, as[20:])
	_, bytesBefore, _ := ob.OutboxStats()
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", mosquittotest.FreePort(t)) // nothing listens
	u, reg := startUplink(t, ob, Options{URL: dead, MaxBytes: bytesBefore / 2})
	waitFor(t, 10*time.Second, "eviction", func() bool { return u.State().Evicted > 0 })
	es, err := ob.OutboxPeek(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	alerts, rollups := 0, 0
	for _, e := range es {
		switch e.Lane {
		case LaneAlert:
			alerts++
		case LaneRollup:
			rollups++
		}
	}
	ev := testutil.ToFloat64(u.m.evicted[LaneRollup])
	if alerts != 40 || rollups+int(ev) != 30 || ev == 0 {
		t.Errorf("left %d alerts and %d rollups, evicted %v; want 40 alerts and 30 rollups in total", alerts, rollups, ev)
	}
	if got := counter(t, reg, "edgeagent_upstream_evicted_total"); got != ev {
		t.Errorf("evicted_total = %v, want %v", got, ev)
	}
	// The oldest rollups went first: what is left is a suffix.
	for i, e := range es {
		if e.Lane == LaneRollup {
			if want := rollupPayload("s01", 30-rollups); string(e.Payload) != string(want) {
				t.Errorf("first rollup left (#%d) = %s, want %s", i, e.Payload, want)
			}
			break
		}
	}
	if err := u.Ready(); err == nil {
		t.Error("Ready() = nil with no broker")
	}
}
