package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// listen binds a real unixgram socket like systemd's notify socket and
// returns its path and a channel of received datagrams.
func listen(t *testing.T) (string, <-chan string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn") // short path: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return path, ch
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram received")
		return ""
	}
}

func TestNotifier_sendsStatesInOneDatagram(t *testing.T) {
	path, ch := listen(t)
	n := New(path)
	if err := n.Ready("broker up\nhttp up"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got != "READY=1\nSTATUS=broker up http up" {
		t.Errorf("got %q", got)
	}
	for _, c := range []struct {
		send func() error
		want string
	}{
		{n.Watchdog, "WATCHDOG=1"},
		{n.Stopping, "STOPPING=1"},
		{n.Reloading, "RELOADING=1"},
		{func() error { return n.Status("12.0 readings/s") }, "STATUS=12.0 readings/s"},
	} {
		if err := c.send(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, ch); got != c.want {
			t.Errorf("got %q; want %q", got, c.want)
		}
	}
	if err := n.Notify("READY"); err == nil {
		t.Error("a state without '=' was sent")
	}
}

func TestNotifier_ExtendWhile(t *testing.T) {
	path, ch := listen(t)
	n := New(path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.ExtendWhile(ctx, 5*time.Millisecond, 1500*time.Millisecond)
	}()
	for range 3 {
		if got := recv(t, ch); got != "EXTEND_TIMEOUT_USEC=1500000" {
			t.Fatalf("got %q; want EXTEND_TIMEOUT_USEC=1500000", got)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ExtendWhile did not return after its context ended")
	}
	New("").ExtendWhile(context.Background(), time.Millisecond, time.Second) // disabled: returns at once
}

func TestNotifier_abstractSocket(t *testing.T) {
	name := "@edgeagent-sdnotify-test-" + strconv.Itoa(os.Getpid())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := New(name).Notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
}

func TestNotifier_disabledAndErrors(t *testing.T) {
	var nilN *Notifier
	for _, n := range []*Notifier{nilN, {}, New("")} {
		if n.Enabled() || n.Ready("x") != nil || n.Watchdog() != nil {
			t.Error("a disabled notifier sent or failed")
		}
	}
	err := New(filepath.Join(t.TempDir(), "missing")).Notify("READY=1")
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing socket: err = %v; want one naming the path", err)
	}
}

func TestFromEnv_unsetsTheVariable(t *testing.T) {
	path, ch := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	n := FromEnv()
	if _, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Error("NOTIFY_SOCKET still set")
	}
	if err := n.Ready(""); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch); got != "READY=1" {
		t.Errorf("got %q", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := strconv.Itoa(os.Getpid())
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", me, 30 * time.Second, false},
		{"30000000", "1", 0, false}, // meant for another process
		{"abc", "", 0, true},
		{"0", "", 0, true},
		{"30000000", "x", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, err := WatchdogInterval()
		if got != c.want || (err != nil) != c.err {
			t.Errorf("USEC=%q PID=%q: %v, %v; want %v, err %v", c.usec, c.pid, got, err, c.want, c.err)
		}
	}
}

// health is a Healthy func whose verdict the test flips; it counts the
// verdicts it gave so the test can wait for the loop without sleeping.
type health struct {
	mu            sync.Mutex
	bad           bool
	good, refused int
	cond          *sync.Cond
}

func newHealth() *health { h := &health{}; h.cond = sync.NewCond(&h.mu); return h }

func (h *health) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.cond.Broadcast()
	if h.bad {
		h.refused++
		return errors.New("pipeline shard 0: no progress for 1m0s with 12 readings queued")
	}
	h.good++
	return nil
}

func (h *health) set(bad bool) (good int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bad = bad
	return h.good
}

func (h *health) waitRefused(n int) (good int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.refused < n {
		h.cond.Wait()
	}
	return h.good
}

func TestLoop_pingsOnlyWhileHealthy(t *testing.T) {
	path, ch := listen(t)
	h := newHealth()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, LoopOptions{
			Notifier: New(path), Timeout: 30 * time.Millisecond, Healthy: h.check,
			Status: func() string { return "3.0 readings/s, 2 sensors" }, StatusInterval: 5 * time.Millisecond,
		})
	}()
	defer func() { cancel(); <-done }()

	// Healthy: both pings and status lines arrive.
	var pings, statuses int
	for pings < 3 || statuses < 2 {
		switch m := recv(t, ch); m {
		case "WATCHDOG=1":
			pings++
		case "STATUS=3.0 readings/s, 2 sensors":
			statuses++
		default:
			t.Fatalf("unexpected datagram %q", m)
		}
	}

	// Wedged: after three refused verdicts the test sends a marker; every
	// ping queued before it must match a healthy verdict given before the
	// wedge, so none was sent while wedged.
	h.set(true)
	good := h.waitRefused(3)
	if err := New(path).Notify("MARKER=1"); err != nil {
		t.Fatal(err)
	}
	for m := recv(t, ch); m != "MARKER=1"; m = recv(t, ch) {
		if m == "WATCHDOG=1" {
			pings++
		}
	}
	if pings != good {
		t.Fatalf("received %d pings for %d healthy verdicts: a ping was sent while wedged", pings, good)
	}
	// Statuses keep coming while wedged (systemctl status still says why).
	for m := recv(t, ch); !strings.HasPrefix(m, "STATUS="); m = recv(t, ch) {
		t.Fatalf("got %q while wedged; want only STATUS", m)
	}

	// Unwedged: pings resume.
	h.set(false)
	for m := recv(t, ch); m != "WATCHDOG=1"; m = recv(t, ch) {
	}
}

func TestLoop_disabledReturns(t *testing.T) {
	Loop(context.Background(), LoopOptions{}) // must not block
	Loop(context.Background(), LoopOptions{Notifier: New("")})
}
