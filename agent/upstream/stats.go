package upstream

import (
	"context"
	"time"
)

// statsLoop refreshes the outbox gauges and enforces MaxBytes/MaxAge every
// StatsInterval until ctx ends.
func (u *Uplink) statsLoop(ctx context.Context) {
	t := time.NewTicker(u.opts.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := u.enforceBounds(time.Now()); err != nil {
				u.log.Warn("outbox eviction failed", "err", err)
			}
			u.refreshStats()
		case <-ctx.Done():
			return
		}
	}
}

func (u *Uplink) refreshStats() {
	depth, bytes, oldest := u.outbox.OutboxStats()
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, time.Since(oldest).Seconds())
	}
	u.m.depth.Set(float64(depth))
	u.m.bytes.Set(float64(bytes))
	u.m.oldestAge.Set(age)
	u.mu.Lock()
	u.state.OutboxDepth, u.state.OutboxBytes, u.state.OutboxOldest = depth, bytes, oldest
	u.mu.Unlock()
}

// evictOrder is the order lanes give way when the outbox is over its bounds.
// Alerts are not in it: they are never evicted.
var evictOrder = [...]string{LaneRollup, LaneStatus}

// enforceBounds evicts, oldest first, rollup entries and then status entries
// while the outbox is over MaxBytes, and every such entry older than MaxAge.
// An entry in flight may be evicted; its later delete is then a no-op.
func (u *Uplink) enforceBounds(now time.Time) error {
	if u.opts.MaxBytes <= 0 && u.opts.MaxAge <= 0 {
		return nil
	}
	_, bytes, oldest := u.outbox.OutboxStats()
	overBytes := u.opts.MaxBytes > 0 && bytes > u.opts.MaxBytes
	overAge := u.opts.MaxAge > 0 && !oldest.IsZero() && now.Sub(oldest) > u.opts.MaxAge
	if !overBytes && !overAge {
		return nil
	}
	for _, lane := range evictOrder {
		var victims []uint64
		var after uint64
		for {
			es, err := u.outbox.OutboxPeek(after, 1024)
			if err != nil {
				return err
			}
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				after = e.Seq
				if e.Lane != lane {
					continue
				}
				old := u.opts.MaxAge > 0 && now.Sub(e.Created) > u.opts.MaxAge
				if old || bytes > u.opts.MaxBytes && u.opts.MaxBytes > 0 {
					victims = append(victims, e.Seq)
					bytes -= int64(len(e.Payload))
				}
			}
		}
		if len(victims) > 0 {
			if err := u.outbox.OutboxDelete(victims...); err != nil {
				return err
			}
			u.m.evictedChild(lane).Add(float64(len(victims)))
			u.addEvicted(uint64(len(victims)))
			u.log.Warn("outbox entries evicted", "lane", lane, "n", len(victims))
		}
	}
	return nil
}
