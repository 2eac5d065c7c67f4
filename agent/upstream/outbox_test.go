package upstream

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

// storeOutbox adapts *storage.DB to Outbox exactly as cmd/edgeagent does:
// only OutboxPeek's entry type differs.
type storeOutbox struct{ *storage.DB }

func (s storeOutbox) OutboxPeek(after uint64, n int) ([]Entry, error) {
	es, err := s.DB.OutboxPeek(after, n)
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = Entry{Seq: e.Seq, Lane: e.Lane, Sensor: e.Sensor, Payload: e.Payload, Created: e.Created}
	}
	return out, err
}

// openStore opens a real storage.DB with the outbox on (path "" means a new
// file in t.TempDir()).
func openStore(t testing.TB, path string) storeOutbox {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "edge.db")
	}
	db, err := storage.Open(path, storage.Options{Outbox: true, Gateway: "gw1", LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return storeOutbox{db}
}

// write commits alerts (and their outbox entries, in the same commit) and
// waits until they are durable.
func (s storeOutbox) write(t testing.TB, as []agent.Alert) {
	t.Helper()
	s.Write(nil, as)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func depth(ob Outbox) int { d, _, _ := ob.OutboxStats(); return d }

// alertBurst makes n firing alerts with distinct ids spread over sensors, in
// the order they are written, and the expected per-sensor id order.
func alertBurst(prefix string, n, sensors int) ([]agent.Alert, map[string][]string) {
	want := map[string][]string{}
	as := make([]agent.Alert, n)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := range n {
		sensor := fmt.Sprintf("s%02d", i%sensors)
		as[i] = agent.Alert{
			ID: fmt.Sprintf("%s-%06d", prefix, i), Gateway: "gw1", Sensor: sensor, Kind: "temperature", Unit: "°C",
			Detector: "zscore", State: agent.AlertFiring, Reason: "z-score 5.1 above 4",
			Score: 0.9, Value: 80 + float64(i%7), FirstValue: 80,
			Baseline:  agent.Baseline{Mean: 21, StdDev: 0.5, Lo: 20, Hi: 22, N: 600},
			StartedAt: t0.Add(time.Duration(i) * time.Second), UpdatedAt: t0.Add(time.Duration(i) * time.Second),
		}
		want[sensor] = append(want[sensor], as[i].ID)
	}
	return as, want
}
