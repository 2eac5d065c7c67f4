package upstream

import (
	"fmt"
	"github.com/edgeagent/edgeagent/broker/mosquittotest"
	"strings"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

func TestUplink_drainsBacklogInOrder(t *testing.T) {
	m := mosquittotest.Start(t, mosquittotest.Options{})
	sub := subscribe(t, m.URL(), "edgeagent/gw1/#")
	ob := openStore(t, "")
	es, want := alertBurst("a", 2000, 7)
	ob.write(t, es[:1900])
	u, reg := startUplink(t, ob, Options{URL: m.URL(), Window: 64})
	// more while draining: the notification wakes the drain
	for _, a := range es[1900:] {
		ob.write(t, []agent.Alert{a})
	}
	sub.waitDistinct(len(es), 30*time.Second)
	waitFor(t, 10*time.Second, "outbox empty", func() bool { return depth(ob) == 0 })
	sub.checkOrder(want)
	if got := counter(t, reg, "edgeagent_upstream_published_total"); got != float64(len(es)) {
		t.Errorf("published_total = %v, want %d (no faults: no duplicates)", got, len(es))
	}
	if got := sub.received(); got != len(es) {
		t.Errorf("subscriber received %d messages, want %d", got, len(es))
	}
	if st := u.State(); !st.Connected || st.Published != uint64(len(es)) {
		t.Errorf("State() = %+v", st)
	}
	if err := u.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
	waitFor(t, 5*time.Second, "depth gauge 0", func() bool { return counter(t, reg, "edgeagent_outbox_depth") == 0 })
	if got := counter(t, reg, "edgeagent_upstream_connected"); got != 1 {
		t.Errorf("connected = %v", got)
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if len(sub.status) == 0 || sub.status[0] != "online" {
		t.Errorf("status messages = %q, want online first", sub.status)
	}
	for topic := range sub.topics {
		if !strings.HasPrefix(topic, "edgeagent/gw1/alerts/s") && topic != "edgeagent/gw1/status" {
			t.Errorf("unexpected topic %q", topic)
		}
	}
}

func TestUplink_birthAndWill(t *testing.T) {
	m := mosquittotest.Start(t, mosquittotest.Options{})
	ob := openStore(t, "")
	u, _ := startUplink(t, ob, Options{URL: m.URL(), TopicPrefix: "plant", Gateway: "gw9"})
	waitFor(t, 10*time.Second, "connected", func() bool { return u.State().Connected })
	// A late subscriber gets the retained birth.
	sub := subscribe(t, m.URL(), "plant/gw9/status")
	waitFor(t, 5*time.Second, "retained online", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(sub.status) > 0
	})
	sub.mu.Lock()
	if sub.status[0] != "online" || !sub.retained[0] {
		t.Errorf("status = %q retained %v, want retained online", sub.status, sub.retained)
	}
	sub.mu.Unlock()
}

// TestUplink_willOnStall: a link that dies without DISCONNECT makes the broker
// publish the retained last will.
func TestUplink_closePublishesOffline(t *testing.T) {
	m := mosquittotest.Start(t, mosquittotest.Options{})
	ob := openStore(t, "")
	sub := subscribe(t, m.URL(), "edgeagent/gw1/status")
	u, _ := startUplink(t, ob, Options{URL: m.URL()})
	waitFor(t, 10*time.Second, "connected", func() bool { return u.State().Connected })
	if err := u.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "offline", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(sub.status) >= 2 && sub.status[len(sub.status)-1] == "offline"
	})
	if u.State().Connected {
		t.Error("still connected after Close")
	}
}

func TestUplink_brokerRestartDuringBurst(t *testing.T) {
	m := mosquittotest.Start(t, mosquittotest.Options{Persistent: true})
	sub := subscribe(t, m.URL(), "edgeagent/gw1/alerts/#")
	ob := openStore(t, "")
	u, reg := startUplink(t, ob, Options{URL: m.URL(), Window: 32})
	waitFor(t, 10*time.Second, "connected", func() bool { return u.State().Connected })
	es, want := alertBurst("r", 3000, 5)
	// Burst in commits of 10, as the group commit would; stop the broker a
	// third in.
	for i := 0; i < len(es); i += 10 {
		ob.write(t, es[i:i+10])
		if i == 1000 {
			m.Stop()
			waitFor(t, 10*time.Second, "disconnected", func() bool { return !u.State().Connected })
		}
	}
	if st := u.State(); st.Connected || st.LastError == "" {
		t.Errorf("while the broker is down: State() = %+v", st)
	}
	if err := u.Ready(); err == nil {
		t.Error("Ready() = nil while the broker is down")
	}
	time.Sleep(300 * time.Millisecond) // a few failed connects with backoff
	m.Start()
	t.Cleanup(func() {
		if t.Failed() {
			d, _, _ := ob.OutboxStats()
			t.Logf("outbox depth %d published %v received %d\nmosquitto log:\n%s", d, counter(t, reg, "edgeagent_upstream_published_total"), sub.received(), m.Log())
		}
	})
	sub.waitDistinct(len(es), 20*time.Second)
	waitFor(t, 10*time.Second, "outbox empty", func() bool { return depth(ob) == 0 })
	sub.checkOrder(want)
	pub := counter(t, reg, "edgeagent_upstream_published_total")
	if pub < float64(len(es)) {
		t.Errorf("published_total = %v < %d alerts", pub, len(es))
	}
	waitFor(t, 10*time.Second, "subscriber got every acknowledged publish", func() bool { return float64(sub.received()) >= pub })
	if e := counter(t, reg, "edgeagent_upstream_errors_total"); e < 1 {
		t.Errorf("errors_total = %v, want ≥ 1", e)
	}
	if c := counter(t, reg, "edgeagent_upstream_connects_total"); c < 2 {
		t.Errorf("connects_total = %v, want ≥ 2", c)
	}
}

func TestUplink_stalledLinkIsRecycled(t *testing.T) {
	m := mosquittotest.Start(t, mosquittotest.Options{})
	sub := subscribe(t, m.URL(), "edgeagent/gw1/alerts/#")
	p := newStallProxy(t, fmt.Sprintf("127.0.0.1:%d", m.Port))
	ob := openStore(t, "")
	u, reg := startUplink(t, ob, Options{URL: p.url(), Window: 16, AckTimeout: 500 * time.Millisecond,
		ConnectTimeout: 500 * time.Millisecond, KeepAlive: time.Minute})
	waitFor(t, 10*time.Second, "connected", func() bool { return u.State().Connected })
	es, want := alertBurst("st", 1000, 4)
	ob.write(t, es[:200])
	sub.waitDistinct(200, 20*time.Second)
	p.stalled.Store(true)
	ob.write(t, es[200:])
	waitFor(t, 20*time.Second, "ack timeout detected", func() bool {
		return strings.Contains(u.State().LastError, "no PUBACK")
	})
	if u.State().Connected {
		t.Error("still connected after ack timeout")
	}
	p.closeAll()
	p.stalled.Store(false)
	sub.waitDistinct(len(es), 30*time.Second)
	waitFor(t, 10*time.Second, "outbox empty", func() bool { return depth(ob) == 0 })
	sub.checkOrder(want)
	pub := counter(t, reg, "edgeagent_upstream_published_total")
	if pub < float64(len(es)) {
		t.Errorf("published_total = %v < %d", pub, len(es))
	}
	waitFor(t, 10*time.Second, "subscriber got every acknowledged publish", func() bool { return float64(sub.received()) >= pub })
	if e := counter(t, reg, "edgeagent_upstream_errors_total"); e < 1 {
		t.Errorf("errors_total = %v, want ≥ 1", e)
	}
	if p.accepts.Load() < 2 {
		t.Errorf("proxy saw %d connections, want a recycled one", p.accepts.Load())
	}
}

// BenchmarkUplink_drain100k reports how fast a 100,000-alert backlog in a
// real storage outbox is acknowledged by a local Mosquitto and deleted, and
// checks that a subscriber received every alert (the broker dropped none).
func BenchmarkUplink_drain100k(b *testing.B) {
	const n = 100_000
	m := mosquittotest.Start(b, mosquittotest.Options{})
	sub := subscribe(b, m.URL(), "edgeagent/gw1/alerts/#")
	iter := 0
	for b.Loop() {
		b.StopTimer()
		ob := openStore(b, "")
		as, _ := alertBurst(fmt.Sprintf("b%d", iter), n, 50)
		ob.write(b, as)
		iter++
		b.StartTimer()
		start := time.Now()
		u, err := New(ob, Options{URL: m.URL(), Gateway: "gw1", Window: 256})
		if err != nil {
			b.Fatal(err)
		}
		u.Start(b.Context())
		for depth(ob) != 0 {
			time.Sleep(10 * time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(n)/el.Seconds(), "alerts/s")
		u.Close(b.Context())
		sub.waitDistinct(iter*n, time.Minute)
		b.StartTimer()
	}
}
