package broker

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// A publish's context carries its deadline from arrival; it ends at that
// deadline once someone waits on it, and end cancels it either way.
func TestPublishCtx(t *testing.T) {
	at := time.Now().Add(50 * time.Millisecond)
	c := &publishCtx{Context: context.Background(), at: at}
	if dl, ok := c.Deadline(); !ok || !dl.Equal(at) {
		t.Fatalf("Deadline = %v, %v; want %v, true", dl, ok, at)
	}
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatal("Done not closed after the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v; want DeadlineExceeded", c.Err())
	}
	c.end()

	unasked := &publishCtx{Context: context.Background(), at: time.Now().Add(time.Hour)}
	unasked.end()
	select {
	case <-unasked.Done():
	default:
		t.Fatal("Done open after end")
	}
	if !errors.Is(unasked.Err(), context.Canceled) {
		t.Fatalf("Err after end = %v; want Canceled", unasked.Err())
	}

	parent, cancel := context.WithCancel(context.Background())
	none := &publishCtx{Context: parent}
	if _, ok := none.Deadline(); ok {
		t.Fatal("a publish without AckTimeout has a deadline")
	}
	cancel()
	if !errors.Is(none.Err(), context.Canceled) {
		t.Fatalf("Err = %v after the acker ended; want Canceled", none.Err())
	}
	none.end()
}

// A QoS 1 publish whose commit does not come within AckTimeout of its
// arrival is refused: a 3.1.1 client is disconnected, unacknowledged.
func TestBroker_QoS1_ackTimeout(t *testing.T) {
	h := newGatedHandler()
	const ackTimeout = 300 * time.Millisecond
	b := startBroker(t, Options{AllowAnonymous: true, Handler: h.handle, AckTimeout: ackTimeout})
	c := rawConnect(t, b, "slow-commit", 60)
	start := time.Now()
	publish311(t, c, 1, "never", false)
	h.waitTook(t, "never")
	typ, body, err := readPacket(t, c, waitLong)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read %x %x, %v; want the connection closed without a PUBACK", typ, body, err)
	}
	if waited := time.Since(start); waited < ackTimeout {
		t.Fatalf("refused after %v; the ack timeout is %v", waited, ackTimeout)
	}
}
