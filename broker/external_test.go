package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// mosquitto runs a real Mosquitto on 127.0.0.1:port until stop or cleanup.
type mosquitto struct {
	t    *testing.T
	port int
	conf string
	cmd  *exec.Cmd
}

func startMosquitto(t *testing.T, port int) *mosquitto {
	t.Helper()
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("mosquitto not installed (Debian package mosquitto; make test installs it)")
	}
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	m := &mosquitto{t: t, port: port, conf: filepath.Join(t.TempDir(), "mosquitto.conf")}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n", port)
	if u := os.Getenv("USER"); u != "" {
		conf += "user " + u + "\n"
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command("/usr/sbin/mosquitto", "-c", m.conf)
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	deadline := time.Now().Add(waitLong)
	for {
		c, err := net.Dial("tcp", m.addr())
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto not listening on %s: %v", m.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Kill()
	m.cmd.Wait()
	m.cmd = nil
}

func (m *mosquitto) addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

func (m *mosquitto) pub(topic, payload string) {
	m.t.Helper()
	out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(m.port), "-q", "1", "-t", topic, "-m", payload).CombinedOutput()
	if err != nil {
		m.t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
}

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
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub not installed")
	}
	mq := startMosquitto(t, 0)
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	e := startExternal(t, ExternalOptions{URL: "tcp://" + mq.addr(), ClientID: "edgeagent-test", Topics: []string{"sensors/#"}, QoS: 1, Handler: rec.handle, Registerer: reg})
	waitFor(t, "subscription", func() bool { return e.Ready() == nil })

	mq.pub("sensors/a/temperature", "20.5")
	if m := rec.next(t); m.Topic != "sensors/a/temperature" || string(m.Payload) != "20.5" || m.QoS != 1 {
		t.Errorf("handler got %+v", m)
	}
	mq.pub("other/topic", "x") // not subscribed

	mq.stop()
	waitFor(t, "link loss noticed", func() bool { return e.Ready() != nil })
	mq.start() // same port, no persistence: the session and subscription are gone
	waitFor(t, "resubscription", func() bool { return e.Ready() == nil })
	mq.pub("sensors/b/temperature", "21.5")
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
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub not installed")
	}
	mq := startMosquitto(t, 0)
	rec := newRecorder()
	var failed atomic.Bool
	rec.fail = func(m Message) error {
		if failed.CompareAndSwap(false, true) {
			return errors.New("disk full")
		}
		return nil
	}
	e := startExternal(t, ExternalOptions{URL: "tcp://" + mq.addr(), ClientID: "edgeagent-redeliver", Topics: []string{"sensors/#"}, QoS: 1, Handler: rec.handle})
	waitFor(t, "subscription", func() bool { return e.Ready() == nil })
	mq.pub("sensors/a/t", "1")
	first, second := rec.next(t), rec.next(t)
	if string(first.Payload) != "1" || string(second.Payload) != "1" {
		t.Errorf("got %q then %q; want the refused message redelivered", first.Payload, second.Payload)
	}
}

func TestNewExternal_invalid(t *testing.T) {
	h := func(context.Context, Message) error { return nil }
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
