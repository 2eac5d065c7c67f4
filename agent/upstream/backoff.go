package upstream

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is an exponential delay with jitter: the n-th consecutive failure
// waits min(Max, Min·2ⁿ) scaled by a random factor in [0.5, 1.5), capped at Max.
// It is not safe for concurrent use; the connect loop owns it.
type backoff struct {
	min, max time.Duration
	fails    int
	rand     func() float64 // [0,1); nil uses math/rand/v2
}

// next returns the delay before the next attempt and counts a failure.
func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.fails && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	r := rand.Float64
	if b.rand != nil {
		r = b.rand
	}
	d = time.Duration(float64(d) * (0.5 + r()))
	b.fails++
	return min(d, b.max)
}

// reset forgets the failures: the next delay is about Min again.
func (b *backoff) reset() { b.fails = 0 }

// wait sleeps for the next delay, or less if ctx ends first; it returns
// ctx.Err() in that case.
func (b *backoff) wait(ctx context.Context) error {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
