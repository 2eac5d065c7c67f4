package broker

import (
	"bytes"
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ackQueue is how many QoS 1 publishes of one client may wait for their
// commit at once; the next blocks the client's read goroutine until the
// first is acknowledged (TCP backpressure). Devices keep one or a few in
// flight; the queue's memory (32 × 72 bytes) is taken per client.
const ackQueue = 32

// ackIdle is how long an acker waits for a publish to acknowledge before it
// ends; the client's next QoS 1 publish starts another. A device that
// publishes every few seconds then holds no goroutine (~8 KB of stack) and
// no queue between its publishes.
const ackIdle = 2 * time.Second

// acker acknowledges one client's QoS 1 publishes in the order they came,
// each once its Pending is durable, on a goroutine of its own. mochi's own
// PUBACK is written by the read goroutine once OnPublish returns, so a
// Handler that waits there for the commit leaves one publish per client in
// flight: at 200 clients the writer committed 55 readings at a time and
// QoS 1 stopped at 26,000/s. With the acker the read goroutine goes on
// reading, and as many publishes as the client's window ride each commit.
type acker struct {
	b      *Broker
	cl     *mqtt.Client
	q      chan ackItem
	ctx    context.Context // ends when the client leaves, the acker retires or the broker closes
	cancel context.CancelFunc
	users  atomic.Int32 // callers between hold and release: they may be about to queue
	out    bytes.Buffer // run's encoded PUBACKs (write)
	expiry *time.Timer  // settle's wait for an ack deadline
}

// ackItem is one publish to acknowledge, or, with barrier, a mark the read
// goroutine waits for (drain).
type ackItem struct {
	id      uint16
	topic   string
	p       Pending     // nil: nothing to wait for
	err     error       // the Handler refused it
	ctx     *publishCtx // the Handler's, with Options.AckTimeout from arrival
	barrier chan struct{}
}

// take hands m to the Handler and queues its acknowledgement, then
// releases the hold on a. It runs on the client's read goroutine and blocks
// while the queue is full.
func (a *acker) take(pk packets.Packet, m Message) {
	defer a.release()
	it := ackItem{id: pk.PacketID, topic: pk.TopicName, ctx: &publishCtx{Context: a.ctx}}
	if a.b.opts.AckTimeout > 0 { // from arrival, for the Handler and the wait
		it.ctx.at = time.Now().Add(a.b.opts.AckTimeout)
	}
	it.p, it.err = a.b.opts.Handler(it.ctx, m)
	select {
	case a.q <- it:
	case <-a.ctx.Done(): // gone: there is no one to acknowledge
		it.ctx.end()
	}
}

func (a *acker) run(as *ackers) {
	idle := time.NewTimer(as.idle)
	defer idle.Stop()
	var acks []uint16 // durable publishes whose PUBACKs are not written yet
	failed := false   // a 3.1.1 link was dropped: acknowledge nothing more
	for {
		var it ackItem
		select {
		case <-a.ctx.Done():
			return
		case <-idle.C:
			if as.retire(a) {
				return
			}
			idle.Reset(as.idle)
			continue
		case it = <-a.q:
		}
		idle.Reset(as.idle)
		// Acknowledge it and the queued publishes already durable behind it
		// with one write: a write system call per PUBACK was 28% of the
		// agent's CPU at 200 clients.
		for {
			if it.barrier != nil {
				acks = a.write(acks)
				close(it.barrier)
			} else {
				err := a.settle(it)
				switch {
				case failed || a.ctx.Err() != nil: // no one to acknowledge any more
				case err == nil:
					acks = append(acks, it.id)
				default:
					acks = a.write(acks)
					failed = a.refuse(it, err)
				}
			}
			if len(a.q) == 0 || len(acks) >= maxAcksWrite {
				break
			}
			if it = <-a.q; it.p != nil && !ready(it.p) {
				acks = a.write(acks) // don't hold these while it commits
			}
		}
		acks = a.write(acks)
	}
}

// maxAcksWrite bounds the PUBACKs one write carries (4 bytes each).
const maxAcksWrite = 64

// settle waits for it to be durable, or for why it is not. It waits for
// the deadline on the acker's one timer: waiting on it.ctx would make a
// timer and a cancel registration per publish (2.6% of the agent's CPU at
// QoS 1, 200 clients), and the first of each commit's publishes waits.
// A publish whose client left is not waited on (see Pending).
func (a *acker) settle(it ackItem) error {
	defer it.ctx.end()
	if it.err != nil || it.p == nil {
		return it.err
	}
	if !ready(it.p) {
		var expired <-chan time.Time
		if !it.ctx.at.IsZero() {
			if a.expiry == nil {
				a.expiry = time.NewTimer(time.Until(it.ctx.at))
			} else {
				a.expiry.Reset(time.Until(it.ctx.at))
			}
			defer a.expiry.Stop()
			expired = a.expiry.C
		}
		select {
		case <-it.p.Done():
		case <-expired:
		case <-a.ctx.Done():
			return a.ctx.Err()
		}
	}
	return it.p.Wait(it.ctx) // at once now, or past the deadline: why not
}

// refuse answers a publish that is not durable and reports whether the
// link was dropped (MQTT 3.1.1 has no negative PUBACK).
func (a *acker) refuse(it ackItem, err error) bool {
	if a.b.refuse(a.cl, it.topic, 1, err) != packets.ErrImplementationSpecificError {
		return true
	}
	_ = a.cl.WritePacket(puback(it.id, packets.ErrImplementationSpecificError))
	return false
}

// write sends the success PUBACKs of ids in one write if it can, else one
// by one through mochi, and returns ids emptied.
func (a *acker) write(ids []uint16) []uint16 {
	if len(ids) == 0 {
		return ids
	}
	a.out.Reset()
	for _, id := range ids {
		pk := puback(id, packets.CodeSuccess)
		pk.ProtocolVersion = a.cl.Properties.ProtocolVersion // as WritePacket sets it
		_ = pk.PubackEncode(&a.out)                          // a success PUBACK always encodes
	}
	if !a.writeDirect(a.out.Bytes(), len(ids)) {
		for _, id := range ids {
			_ = a.cl.WritePacket(puback(id, packets.CodeSuccess))
		}
	}
	return ids[:0]
}

// writeDirect writes the n encoded packets in b to the client's connection
// under the client's lock, as WritePacket writes one packet when it holds
// none for the client. It reports false, having written nothing, when
// mochi holds packets for the client in its write buffer (outbuf, filled
// while deliveries are queued): an earlier PUBACK may be among them.
func (a *acker) writeDirect(b []byte, n int) bool {
	if outbufField < 0 {
		return false
	}
	cl := a.cl
	cl.Lock()
	defer cl.Unlock()
	if !reflect.ValueOf(&cl.Net).Elem().Field(outbufField).IsNil() {
		return false
	}
	if cl.Closed() || cl.Net.Conn == nil {
		return true // WritePacket would write nothing either
	}
	if _, err := cl.Net.Conn.Write(b); err == nil { // as WritePacket, which counts only what it wrote
		atomic.AddInt64(&a.b.srv.Info.BytesSent, int64(len(b)))
		atomic.AddInt64(&a.b.srv.Info.PacketsSent, int64(n))
	}
	return true
}

// outbufField is the index of mochi's (unexported) ClientConnection.outbuf
// in the struct, or -1 if this mochi has none: then every PUBACK goes
// through WritePacket. TestOutbufField fails on a mochi without it.
var outbufField = func() int {
	f, ok := reflect.TypeFor[mqtt.ClientConnection]().FieldByName("outbuf")
	if !ok || f.Type != reflect.TypeFor[*bytes.Buffer]() || len(f.Index) != 1 {
		return -1
	}
	return f.Index[0]
}()

// puback is the PUBACK mochi would build for packet id.
func puback(id uint16, code packets.Code) packets.Packet {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id, ReasonCode: code.Code}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		pk.Properties.ReasonString = code.Reason
	}
	return pk
}

// ackers holds the acker of each client that has sent a QoS 1 publish in
// the last ackIdle.
type ackers struct {
	b      *Broker
	mu     sync.Mutex
	closed bool
	m      map[*mqtt.Client]*acker
	wg     sync.WaitGroup
	idle   time.Duration // ackIdle; tests shorten it
}

// hold returns cl's acker, starting one if start, and counts the caller as
// a user until it calls release (take does); nil if cl has none and start
// is false, or once the broker is closing.
func (as *ackers) hold(cl *mqtt.Client, start bool) *acker {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.closed {
		return nil
	}
	a := as.m[cl]
	if a == nil && start {
		a = &acker{b: as.b, cl: cl, q: make(chan ackItem, ackQueue)}
		a.ctx, a.cancel = context.WithCancel(as.b.ctx)
		as.m[cl] = a
		as.wg.Go(func() { a.run(as) })
	}
	if a != nil {
		a.users.Add(1)
	}
	return a
}

// release ends a hold (see retire).
func (a *acker) release() { a.users.Add(-1) }

// retire ends a if nothing is queued and nobody holds it: a caller counts
// itself under as.mu and queues before it lets go, so once both are zero
// here the next publish finds no acker and starts another.
func (as *ackers) retire(a *acker) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	if a.users.Load() > 0 || len(a.q) > 0 {
		return false
	}
	if as.m[a.cl] == a {
		delete(as.m, a.cl)
	}
	a.cancel()
	return true
}

// drain returns once every publish cl's acker holds is acknowledged (or
// refused), so that an acknowledgement mochi writes next keeps the order.
func (as *ackers) drain(cl *mqtt.Client) {
	a := as.hold(cl, false)
	if a == nil {
		return
	}
	done := make(chan struct{})
	select {
	case a.q <- ackItem{barrier: done}:
	case <-a.ctx.Done():
	}
	a.release()
	select {
	case <-done:
	case <-a.ctx.Done():
	}
}

// stop ends cl's acker; what it still holds is never acknowledged.
func (as *ackers) stop(cl *mqtt.Client) {
	as.mu.Lock()
	defer as.mu.Unlock()
	if a := as.m[cl]; a != nil {
		a.cancel()
		delete(as.m, cl)
	}
}

// close ends every acker and waits for them.
func (as *ackers) close() {
	as.mu.Lock()
	as.closed = true
	for cl, a := range as.m {
		a.cancel()
		delete(as.m, cl)
	}
	as.mu.Unlock()
	as.wg.Wait()
}
