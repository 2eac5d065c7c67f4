package broker

import (
	"context"
	"sync"
	"time"
)

// publishCtx is the context of one QoS 1 publish: the acker's, with a
// deadline (at; zero: none) from the publish's arrival. Publishes rarely
// wait on it: the intake's queue has room, and the acker waits for the
// commit on a timer of its own (settle). So the timer and the cancel
// registration of context.WithDeadline (3.7% of the agent's CPU at QoS 1,
// 200 clients) are made only when Done or Err is first asked for.
type publishCtx struct {
	context.Context // the acker's
	at              time.Time
	once            sync.Once
	ctx             context.Context // the parent with the deadline, once asked for
	cancel          context.CancelFunc
}

func (c *publishCtx) Deadline() (time.Time, bool) {
	if c.at.IsZero() {
		return c.Context.Deadline()
	}
	return c.at, true
}

func (c *publishCtx) Done() <-chan struct{} {
	c.once.Do(c.start)
	return c.ctx.Done()
}

func (c *publishCtx) Err() error {
	c.once.Do(c.start)
	return c.ctx.Err()
}

func (c *publishCtx) start() {
	if c.at.IsZero() {
		c.ctx, c.cancel = c.Context, func() {}
		return
	}
	c.ctx, c.cancel = context.WithDeadline(c.Context, c.at)
}

// end releases the deadline's timer, if it was made; a context never
// asked for is cancelled without one.
func (c *publishCtx) end() {
	c.once.Do(func() { c.ctx, c.cancel = cancelled, func() {} })
	c.cancel()
}

// cancelled is a context that has ended (context.Canceled).
var cancelled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
