package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate is a Pending the test completes by hand.
type gate struct {
	done  chan struct{}
	err   error
	waits atomic.Int32 // calls of Wait
}

func (g *gate) Done() <-chan struct{} { return g.done }

func (g *gate) Wait(ctx context.Context) error {
	g.waits.Add(1)
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedHandler returns a gate per payload (created on first use by either
// side) and reports each payload it takes.
type gatedHandler struct {
	mu    sync.Mutex
	gates map[string]*gate
	took  chan string
	fail  map[string]error // refused at once
}

func newGatedHandler() *gatedHandler {
	return &gatedHandler{gates: map[string]*gate{}, took: make(chan string, 100), fail: map[string]error{}}
}

func (h *gatedHandler) gate(payload string) *gate {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.gates[payload]
	if g == nil {
		g = &gate{done: make(chan struct{})}
		h.gates[payload] = g
	}
	return g
}

func (h *gatedHandler) handle(_ context.Context, m Message) (Pending, error) {
	h.took <- string(m.Payload)
	h.mu.Lock()
	err := h.fail[string(m.Payload)]
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return h.gate(string(m.Payload)), nil
}

func (h *gatedHandler) open(payload string, err error) {
	g := h.gate(payload)
	g.err = err
	close(g.done)
}

func (h *gatedHandler) waitTook(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-h.took:
			if got != w {
				t.Fatalf("handler took %q; want %q", got, w)
			}
		case <-time.After(waitLong):
			t.Fatalf("handler did not take %q while earlier publishes waited for their commit", w)
		}
	}
}

// publish311 writes an MQTT 3.1.1 QoS 1 PUBLISH of payload to topic "s/t".
func publish311(t *testing.T, c net.Conn, id uint16, payload string, retain bool) {
	t.Helper()
	first := byte(0x32)
	if retain {
		first |= 1
	}
	pk := []byte{first, byte(2 + 3 + 2 + len(payload)), 0, 3, 's', '/', 't', byte(id >> 8), byte(id)}
	if _, err := c.Write(append(pk, payload...)); err != nil {
		t.Fatal(err)
	}
}

// readPacket reads one packet of at most 127 bytes: its type byte and body.
func readPacket(t *testing.T, c net.Conn, within time.Duration) (byte, []byte, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	head := make([]byte, 2)
	if _, err := io.ReadFull(c, head); err != nil {
		return 0, nil, err
	}
	body := make([]byte, head[1])
	if _, err := io.ReadFull(c, body); err != nil {
		return 0, nil, err
	}
	return head[0], body, nil
}

func wantPuback(t *testing.T, c net.Conn, id uint16) {
	t.Helper()
	typ, body, err := readPacket(t, c, waitLong)
	if err != nil || typ != 0x40 || len(body) < 2 || uint16(body[0])<<8|uint16(body[1]) != id {
		t.Fatalf("read %x %x, %v; want the PUBACK of %d", typ, body, err, id)
	}
}

func noPacket(t *testing.T, c net.Conn, what string) {
	t.Helper()
	var ne net.Error
	if typ, body, err := readPacket(t, c, 200*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read %x %x, %v; want nothing yet: %s", typ, body, err, what)
	}
}

// The read goroutine goes on while earlier QoS 1 publishes wait for their
// commit, and the PUBACKs still go out in the order the publishes came.
func TestBroker_QoS1_acksInOrderWhileCommitsWait(t *testing.T) {
	h := newGatedHandler()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle})
	c := rawConnect(t, b, "pipelined", 60)
	for i, p := range []string{"a", "b", "c"} {
		publish311(t, c, uint16(i+1), p, false)
	}
	h.waitTook(t, "a", "b", "c") // before any is durable
	h.open("c", nil)
	h.open("b", nil)
	noPacket(t, c, "a is not durable, and b and c must not overtake it")
	h.open("a", nil)
	for id := range uint16(3) {
		wantPuback(t, c, id+1)
	}
}

// A publish refused while an earlier one waits is refused in its turn: a
// 3.1.1 client is disconnected after the earlier PUBACK, unacknowledged.
func TestBroker_QoS1_refusedInTurn(t *testing.T) {
	h := newGatedHandler()
	h.fail["bad"] = errors.New("disk full")
	b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle})
	c := rawConnect(t, b, "refused", 60)
	publish311(t, c, 1, "ok", false)
	publish311(t, c, 2, "bad", false)
	h.waitTook(t, "ok", "bad")
	noPacket(t, c, "the first publish is not durable yet")
	h.open("ok", nil)
	wantPuback(t, c, 1)
	if typ, body, err := readPacket(t, c, waitLong); err == nil {
		t.Fatalf("read %x %x after the refused publish; want the connection closed", typ, body)
	}
}

// A publish mochi acknowledges itself (retained, or with a subscriber to
// deliver to) waits until the acker has acknowledged every earlier one.
func TestBroker_QoS1_syncAckAfterPending(t *testing.T) {
	h := newGatedHandler()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle})
	c := rawConnect(t, b, "mixed", 60)
	publish311(t, c, 1, "pending", false)
	h.waitTook(t, "pending")
	h.open("retained", nil)
	publish311(t, c, 2, "retained", true)
	noPacket(t, c, "the retained publish must not be acknowledged before the pending one")
	h.open("pending", nil)
	wantPuback(t, c, 1)
	h.waitTook(t, "retained")
	wantPuback(t, c, 2)
}

// A client that leaves with publishes waiting stops its acker, and Close
// does not wait on their commits.
// The Pending of a publish whose client left is not waited on: its
// message is still made durable, and an error from Wait would count it as
// refused (the intake counts a rejected reading).
func TestBroker_QoS1_leaverNotWaitedOn(t *testing.T) {
	for _, ackTimeout := range []time.Duration{0, time.Minute} {
		h := newGatedHandler()
		b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle, AckTimeout: ackTimeout})
		c := rawConnect(t, b, "leaver", 60)
		publish311(t, c, 1, "pending", false)
		h.waitTook(t, "pending")
		c.Close()
		deadline := time.Now().Add(waitLong)
		for {
			b.ackers.mu.Lock()
			n := len(b.ackers.m)
			b.ackers.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ack timeout %v: the acker did not end when its client left", ackTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if n := h.gate("pending").waits.Load(); n != 0 {
			t.Errorf("ack timeout %v: Wait called %d times after the client left", ackTimeout, n)
		}
	}
}

func TestBroker_QoS1_leaveWhilePending(t *testing.T) {
	h := newGatedHandler()
	b, err := New(Options{Listen: "127.0.0.1:0", AllowAnonymous: true, Handler: h.handle})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	left := rawConnect(t, b, "left", 60)
	publish311(t, left, 1, "never", false)
	h.waitTook(t, "never")
	left.Close()
	stays := rawConnect(t, b, "stays", 60)
	publish311(t, stays, 1, "forever", false)
	h.waitTook(t, "forever")
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLong):
		t.Fatal("Close waits on publishes that are never durable")
	}
	b.ackers.mu.Lock()
	defer b.ackers.mu.Unlock()
	if n := len(b.ackers.m); n != 0 {
		t.Fatalf("%d ackers left after Close", n)
	}
}

// shortIdle makes b's ackers retire after d without a publish (under the
// lock, so the ackers started later see it).
func shortIdle(b *Broker, d time.Duration) {
	b.ackers.mu.Lock()
	b.ackers.idle = d
	b.ackers.mu.Unlock()
}

func ackersRunning(b *Broker) int {
	b.ackers.mu.Lock()
	defer b.ackers.mu.Unlock()
	return len(b.ackers.m)
}

// An acker with nothing to acknowledge for its idle time ends (its
// goroutine and queue go), and the client's next QoS 1 publish starts
// another.
func TestBroker_QoS1_ackerRetiresWhenIdle(t *testing.T) {
	h := newGatedHandler()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle})
	shortIdle(b, 50*time.Millisecond)
	c := rawConnect(t, b, "sometimes", 60)
	h.open("first", nil)
	publish311(t, c, 1, "first", false)
	h.waitTook(t, "first")
	wantPuback(t, c, 1)
	for deadline := time.Now().Add(waitLong); ackersRunning(b) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the acker did not retire while its client was idle")
		}
	}
	publish311(t, c, 2, "pending", false) // a new acker, which waits for the commit
	h.waitTook(t, "pending")
	time.Sleep(200 * time.Millisecond) // four idle times
	if ackersRunning(b) != 1 {
		t.Fatal("the acker retired with a publish waiting for its commit")
	}
	h.open("pending", nil)
	wantPuback(t, c, 2)
}

// Publishes that come about when the acker's idle time runs out are all
// acknowledged, in order: an acker retires only when nothing is queued and
// no publish is on its way in.
func TestBroker_QoS1_retireRacesPublishes(t *testing.T) {
	b := startBroker(t, Options{AllowAnonymous: true,
		Handler: func(context.Context, Message) (Pending, error) { return nil, nil }})
	shortIdle(b, time.Millisecond)
	var wg sync.WaitGroup
	for i := range 4 {
		c := rawConnect(t, b, "racer"+string(rune('a'+i)), 60)
		wg.Go(func() {
			for id := uint16(1); id <= 150; id++ {
				if _, err := c.Write([]byte{0x32, 8, 0, 3, 's', '/', 't', byte(id >> 8), byte(id), 'x'}); err != nil {
					t.Error(err)
					return
				}
				c.SetReadDeadline(time.Now().Add(waitLong))
				ack := make([]byte, 4)
				if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x40 || uint16(ack[2])<<8|uint16(ack[3]) != id {
					t.Errorf("client %d: read %x, %v; want the PUBACK of %d", i, ack, err, id)
					return
				}
				time.Sleep(time.Duration(id%3) * 500 * time.Microsecond) // around the idle time
			}
		})
	}
	wg.Wait()
}

// mochi still has the write buffer the acker checks before it writes
// PUBACKs beside WritePacket; without it every PUBACK takes WritePacket.
func TestOutbufField(t *testing.T) {
	if outbufField < 0 {
		t.Fatal("mqtt.ClientConnection has no outbuf *bytes.Buffer: PUBACKs are no longer written together")
	}
}

// PUBACKs of publishes durable together go out together, in order, and
// mochi's counters of packets sent include them.
func TestBroker_QoS1_durableTogetherAckedTogether(t *testing.T) {
	h := newGatedHandler()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle})
	c := rawConnect(t, b, "window", 60)
	for id := range uint16(5) {
		publish311(t, c, id+1, string(rune('a'+id)), false)
	}
	h.waitTook(t, "a", "b", "c", "d", "e")
	for _, p := range []string{"e", "d", "c", "b"} {
		h.open(p, nil)
	}
	noPacket(t, c, "a is not durable")
	h.open("a", nil)
	c.SetReadDeadline(time.Now().Add(waitLong))
	all := make([]byte, 5*4)
	if _, err := io.ReadFull(c, all); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if got := all[4*i : 4*i+4]; got[0] != 0x40 || got[1] != 2 || int(got[3]) != i+1 {
			t.Fatalf("PUBACK %d: %x; want 40 02 00 %02x (all: %x)", i+1, got, i+1, all)
		}
	}
	// mochi counts a packet after writing it, so the count may lag the reads
	deadline := time.Now().Add(waitLong)
	for atomic.LoadInt64(&b.srv.Info.PacketsSent) < 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := atomic.LoadInt64(&b.srv.Info.PacketsSent); n != 6 {
		t.Errorf("mochi counted %d packets sent; want 6: the CONNACK and the 5 PUBACKs", n)
	}
}
