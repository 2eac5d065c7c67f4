package main

import (
	"context"
	"fmt"
	"time"
)

// summary is a one-line account of what the agent is doing, for the log and
// systemd's STATUS=.
type summary struct {
	at                  time.Time
	received, processed uint64
	rejected            uint64
	sensors             int
}

func (a *App) snapshotSummary() summary {
	st := a.pipeline.Stats()
	return summary{at: time.Now(), received: st.Received, processed: st.Processed, rejected: st.Rejected, sensors: st.Sensors}
}

// reportStatus logs a summary every interval while readings flow, so a
// person running the agent sees it working; it returns when ctx ends.
func (a *App) reportStatus(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := a.snapshotSummary()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cur := a.snapshotSummary()
			if cur.processed != prev.processed || cur.rejected != prev.rejected {
				st := a.pipeline.Stats()
				a.log.Info("pipeline", "readings_per_s", fmt.Sprintf("%.1f", float64(cur.processed-prev.processed)/cur.at.Sub(prev.at).Seconds()),
					"sensors", cur.sensors, "processed", cur.processed, "rejected", cur.rejected, "queued", st.QueueDepth)
			}
			prev = cur
		}
	}
}
