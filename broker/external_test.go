package broker

import (
	"context"
	"errors"
	"github.com/edgeagent/edgeagent/broker/mosquittotest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func startExternal(t *testing.T, opts ExternalOptions) *External {
	t.Helper()
	e, err := NewExternal(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExternal_resubscribesAfterMosquittoRestart(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	e := startExternal(t, ExternalOptions{URL: mq.URL(), ClientID: "edgeagent-test", Topics: []string{"sensors/#"}, QoS: 1, Handler: rec.handle, Registerer: reg})
	waitFor(t, "subscription", func() bool { return e.Ready() == nil })

	mosquittotest.Pub(t, mq.Addr(), "sensors/a/temperature", "20.5")
	if m := rec.next(t); m.Topic != "sensors/a/temperature" || string(m.Payload) != "20.5" || m.QoS != 1 {
		t.Errorf("handler got %+v", m)
	}
	mosquittotest.Pub(t, mq.Addr(), "other/topic", "x") // not subscribed

	mq.Stop()
	waitFor(t, "link loss noticed", func() bool { return e.Ready() != nil })
	mq.Start() // same port, no persistence: the session and subscription are gone
	waitFor(t, "resubscription", func() bool { return e.Ready() == nil })
	mosquittotest.Pub(t, mq.Addr(), "sensors/b/temperature", "21.5")
	if m := rec.next(t); m.Topic != "sensors/b/temperature" {
		t.Errorf("after restart handler got %q", m.Topic)
	}
	if v := metric(t, reg, "edgeagent_mqtt_external_connects_total"); v != 2 {
		t.Errorf("external_connects_total = %v; want 2", v)
	}
	if n := rec.count(); n != 2 {
		t.Errorf("handler saw %d messages; want 2", n)
	}
}

func TestExternal_handlerErrorRedelivers(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	rec := newRecorder()
	var failed atomic.Bool
	rec.fail = func(m Message) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("disk full")
		}
		return nil
	}
	e := startExternal(t, ExternalOptions{URL: mq.URL(), ClientID: "edgeagent-redeliver", Topics: []string{"sensors/#"}, QoS: 1, Handler: rec.handle})
	waitFor(t, "subscription", func() bool { return e.Ready() == nil })
	mosquittotest.Pub(t, mq.Addr(), "sensors/a/t", "1")
	first, second := rec.next(t), rec.next(t)
	if string(first.Payload) != "1" || string(second.Payload) != "1" {
		t.Errorf("got %q then %q; want the refused message redelivered", first.Payload, second.Payload)
	}
}

func TestNewExternal_invalid(t *testing.T) {
	h := func(context.Context, Message) (Pending, error) { return nil, nil }
	for _, o := range []ExternalOptions{
		{Topics: []string{"a"}, Handler: h},
		{URL: "tcp://127.0.0.1:1", Handler: h},
		{URL: "tcp://127.0.0.1:1", Topics: []string{"a"}},
	} {
		if _, err := NewExternal(o); err == nil {
			t.Errorf("NewExternal(%+v) succeeded", o)
		}
	}
}
