package upstream

import (
	"context"
	"testing"
	"time"
)

func TestBackoff_next(t *testing.T) {
	for _, tt := range []struct {
		r    float64
		want []time.Duration
	}{
		{0.5, []time.Duration{100, 200, 400, 800, 1000, 1000}},    // no jitter: doubling, capped
		{0, []time.Duration{50, 100, 200, 400, 500, 500}},         // lowest jitter: half
		{0.999, []time.Duration{149, 299, 599, 1000, 1000, 1000}}, // highest jitter, never above max
	} {
		b := &backoff{min: 100 * time.Millisecond, max: time.Second, rand: func() float64 { return tt.r }}
		for i, w := range tt.want {
			w *= time.Millisecond
			if got := b.next().Truncate(time.Millisecond); got != w {
				t.Errorf("r=%v: next() #%d = %v; want %v", tt.r, i, got, w)
			}
		}
		b.reset()
		if got := b.next(); got > 150*time.Millisecond {
			t.Errorf("r=%v: after reset next() = %v; want about min", tt.r, got)
		}
	}
}

func TestBackoff_waitObeysContext(t *testing.T) {
	b := &backoff{min: time.Hour, max: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.wait(ctx); err != context.Canceled {
		t.Errorf("wait(cancelled) = %v; want context.Canceled", err)
	}
}
