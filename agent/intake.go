package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Decoder turns one MQTT message into readings. agent/ingest implements it.
type Decoder interface {
	// Decode appends the readings in payload to out. It returns ErrUnmatched
	// (wrapped or not) when no template matches topic, and rejections as errors
	// that implement Rejection (one per bad item; errors.Join for several).
	Decode(topic string, payload []byte, arrived time.Time, out []Reading) ([]Reading, error)
}

// ErrUnmatched: the topic matches no ingest template, so it carries no readings.
var ErrUnmatched = errors.New("no topic template matches")

// Rejection is a decode error with a stable, low-cardinality reason for
// edgeagent_readings_rejected_total{reason}.
type Rejection interface {
	error
	RejectReason() string
}

// Message is one publish handed to the pipeline by a broker.
type Message struct {
	Topic    string
	Payload  []byte
	ClientID string
	// Durable asks Ingest to return only once every reading is committed
	// (QoS 1: the PUBACK then means "on disk").
	Durable  bool
	Retained bool
}

// Intake decodes messages and submits their readings to a pipeline, counting
// every rejection. It is safe for concurrent use by the broker's client goroutines.
type Intake struct {
	p          *Pipeline
	dec        Decoder
	ackTimeout time.Duration
	now        func() time.Time
	bufs       sync.Pool
	lastLog    atomic.Int64 // unix nanos of the last rejection log line
	suppressed atomic.Int64
}

// NewIntake returns an Intake feeding p. ackTimeout bounds the wait for a
// durable commit (keep it well under the clients' keepalive); zero means 2s.
func NewIntake(p *Pipeline, dec Decoder, ackTimeout time.Duration) *Intake {
	if ackTimeout <= 0 {
		ackTimeout = 2 * time.Second
	}
	return &Intake{p: p, dec: dec, ackTimeout: ackTimeout, now: p.opts.Now,
		bufs: sync.Pool{New: func() any { s := make([]Reading, 0, 8); return &s }}}
}

// Ingest decodes m and submits its readings. Bad input is counted and
// acknowledged (nil): resending it would not help. A non-nil error means the
// readings are not durable (storage failed, timed out or the agent is
// stopping) and the publish must not be acknowledged.
func (in *Intake) Ingest(ctx context.Context, m Message) error {
	d, err := in.Submit(ctx, m)
	if err != nil {
		return err
	}
	return d.Wait(ctx)
}

// Submit is Ingest without the wait: it decodes m and submits its readings,
// and for a Durable message returns what to wait on before acknowledging
// it (nil when there is nothing to wait for: no readings, or not Durable).
// A broker that acknowledges later can so read on while earlier publishes
// wait for their commit.
func (in *Intake) Submit(ctx context.Context, m Message) (*Durable, error) {
	bp := in.bufs.Get().(*[]Reading)
	defer func() { clear(*bp); *bp = (*bp)[:0]; in.bufs.Put(bp) }()
	rs, err := in.dec.Decode(m.Topic, m.Payload, in.now(), *bp)
	*bp = rs[:0]
	if err != nil {
		if errors.Is(err, ErrUnmatched) {
			in.p.metrics.unmatchedOne()
			return nil, nil
		}
		in.countRejections(m, err)
	}
	if len(rs) == 0 {
		return nil, nil
	}
	var c *Commit
	if m.Durable {
		c = NewCommit(len(rs))
	}
	for i := range rs {
		r := rs[i]
		r.Commit = c
		if m.Retained {
			r.Flags |= FlagRetained
		}
		if err := in.p.Submit(ctx, r); err != nil && !errors.Is(err, ErrTooManySensors) {
			// The remaining readings never reach a shard: complete them here.
			for range rs[i+1:] {
				c.Done(err)
			}
			return nil, fmt.Errorf("topic %q: %w", m.Topic, err)
		} else if err != nil {
			in.logRejection(m, err)
		}
	}
	if c == nil {
		return nil, nil
	}
	return &Durable{in: in, c: c, topic: m.Topic}, nil
}

// Durable is a submitted message whose readings are not all committed yet.
type Durable struct {
	in    *Intake
	c     *Commit
	topic string
}

// Done is closed once Wait would return at once.
func (d *Durable) Done() <-chan struct{} {
	if d == nil {
		return closed
	}
	return d.c.done
}

// closed is a closed channel: what a nil Durable is Done with.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Wait returns nil once every reading of the message is committed, or why
// not: storage failed, the Intake's ack timeout passed, or ctx ended. A
// nil Durable has nothing to wait for.
func (d *Durable) Wait(ctx context.Context) error {
	if d == nil {
		return nil
	}
	// The broker's context usually ends first already (mqtt.ack_timeout
	// bounds both); deriving one would then add only a cancel registration.
	wctx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d.in.ackTimeout {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, d.in.ackTimeout)
		defer cancel()
	}
	if err := d.c.Wait(wctx); err != nil {
		reason := ReasonStorageFailed
		if errors.Is(err, context.DeadlineExceeded) {
			reason, err = ReasonAckTimeout, ErrCommitTimedOut
		}
		d.in.p.metrics.reject(reason)
		return fmt.Errorf("topic %q: not durable: %w", d.topic, err)
	}
	return nil
}

func (in *Intake) countRejections(m Message, err error) {
	var each []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		each = j.Unwrap()
	} else {
		each = []error{err}
	}
	for _, e := range each {
		reason := "invalid"
		var rej Rejection
		if errors.As(e, &rej) {
			reason = rej.RejectReason()
		}
		in.p.metrics.reject(reason)
	}
	in.logRejection(m, err)
}

// logRejection logs at debug level at most once a second, saying how many
// were suppressed in between, so a misbehaving sensor cannot flood the log.
func (in *Intake) logRejection(m Message, err error) {
	now := in.now().UnixNano()
	last := in.lastLog.Load()
	if now-last < int64(time.Second) || !in.lastLog.CompareAndSwap(last, now) {
		in.suppressed.Add(1)
		return
	}
	in.p.opts.Logger.Debug("reading rejected", "topic", m.Topic, "client", m.ClientID,
		"err", err, "suppressed", in.suppressed.Swap(0))
}
