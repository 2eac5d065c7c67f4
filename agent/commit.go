package agent

import (
	"context"
	"sync"
	"sync/atomic"
)

// Commit lets a publisher wait until every reading of one message is durable.
// It is created with the number of readings; each one is completed exactly
// once with Done, by whichever stage ends its life (the storage writer after a
// commit, or the pipeline when a reading is rejected or there is no storage).
type Commit struct {
	pending atomic.Int32
	once    sync.Once
	mu      sync.Mutex
	err     error
	done    chan struct{}
}

// NewCommit returns a Commit that completes after n calls to Done.
// With n <= 0 it is complete at once.
func NewCommit(n int) *Commit {
	c := &Commit{done: make(chan struct{})}
	c.pending.Store(int32(n))
	if n <= 0 {
		close(c.done)
	}
	return c
}

// Done completes one reading; a non-nil err fails the whole commit.
// It does nothing if c is nil, so stages may call it unconditionally.
func (c *Commit) Done(err error) {
	if c == nil {
		return
	}
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	if c.pending.Add(-1) == 0 {
		c.once.Do(func() { close(c.done) })
	}
}

// Wait blocks until every reading is done or ctx ends, and returns the first
// error given to Done, or ctx's error.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.done:
	default:
		// only now ask ctx for Done: a caller's context may make its timer
		// then (the broker's per-publish deadline does)
		select {
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
