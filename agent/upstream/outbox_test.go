package upstream

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// boltOutbox is a minimal bbolt outbox for tests until storage lands.
type boltOutbox struct {
	db     *bolt.DB
	notify chan struct{}
	mu     sync.Mutex
}

var bucketOutbox = []byte("outbox")

func openBoltOutbox(t testing.TB, path string) *boltOutbox {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "edge.db")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucketOutbox); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &boltOutbox{db: db, notify: make(chan struct{}, 1)}
}

type boltEntry struct {
	Lane, Sensor string
	Payload      []byte
	Created      time.Time
}

func (o *boltOutbox) OutboxEnqueue(lane, sensor string, payload []byte) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		seq, _ := b.NextSequence()
		v, _ := json.Marshal(boltEntry{lane, sensor, payload, time.Now()})
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), v)
	})
	o.signal()
	return err
}

func (o *boltOutbox) enqueueMany(es []boltEntry) error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for _, e := range es {
			seq, _ := b.NextSequence()
			v, _ := json.Marshal(e)
			if err := b.Put(binary.BigEndian.AppendUint64(nil, seq), v); err != nil {
				return err
			}
		}
		return nil
	})
	o.signal()
	return err
}

func (o *boltOutbox) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *boltOutbox) OutboxPeek(after uint64, n int) ([]Entry, error) {
	var out []Entry
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < n; k, v = c.Next() {
			var e boltEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, Entry{Seq: binary.BigEndian.Uint64(k), Lane: e.Lane, Sensor: e.Sensor, Payload: e.Payload, Created: e.Created})
		}
		return nil
	})
	return out, err
}

func (o *boltOutbox) OutboxDelete(seqs ...uint64) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		for _, s := range seqs {
			if err := b.Delete(binary.BigEndian.AppendUint64(nil, s)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (o *boltOutbox) OutboxStats() (depth int, bytes int64, oldest time.Time) {
	o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var e boltEntry
			json.Unmarshal(v, &e)
			if depth == 0 {
				oldest = e.Created
			}
			depth++
			bytes += int64(len(e.Payload))
		}
		return nil
	})
	return
}

func (o *boltOutbox) OutboxNotify() <-chan struct{} { return o.notify }

// alertBurst makes n alerts spread over sensors, in the order they are
// enqueued, and returns them with the expected per-sensor id order.
func alertBurst(prefix string, n, sensors int) ([]boltEntry, map[string][]string) {
	want := map[string][]string{}
	es := make([]boltEntry, n)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := range n {
		sensor := fmt.Sprintf("s%02d", i%sensors)
		a := agent.Alert{
			ID: fmt.Sprintf("%s-%06d", prefix, i), Gateway: "gw1", Sensor: sensor, Kind: "temperature",
			Detector: "zscore", State: agent.AlertFiring, Reason: "z-score 5.1 above 4",
			Score: 0.9, Value: 80 + float64(i%7), FirstValue: 80,
			Baseline:  agent.Baseline{Mean: 21, StdDev: 0.5, Lo: 20, Hi: 22, N: 600},
			StartedAt: t0.Add(time.Duration(i) * time.Second), UpdatedAt: t0.Add(time.Duration(i) * time.Second),
		}
		p, _ := json.Marshal(a)
		es[i] = boltEntry{Lane: LaneAlert, Sensor: sensor, Payload: p, Created: time.Now()}
		want[sensor] = append(want[sensor], a.ID)
	}
	return es, want
}
