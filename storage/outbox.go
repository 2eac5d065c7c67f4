package storage

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OutboxEntry is one message waiting for the uplink. Entries are kept in
// FIFO order of Seq (bbolt NextSequence: persisted and monotonic, not a
// clock). Lane "alert" entries are never evicted; lane "rollup" entries are
// evicted oldest first when the outbox is over OutboxMaxBytes or the entry
// is older than OutboxMaxAge.
type OutboxEntry struct {
	Seq     uint64
	Lane    string // "alert" or "rollup"
	Sensor  string
	Payload []byte // for alerts, the JSON of agent.Alert
	Created time.Time
}

// outboxDelta is what one transaction did to the outbox; it is applied to
// the counters only after the commit succeeded.
type outboxDelta struct {
	added   int
	depth   int
	bytes   int64
	touched bool
}

func (db *DB) addOutbox(tx *bolt.Tx, lane byte, sensor string, payload []byte, d *outboxDelta) error {
	b := tx.Bucket(bucketOutbox)
	b.FillPercent = 1 // pure appends
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("outbox: sequence: %w", err)
	}
	v := encodeOutbox(lane, db.opts.Now(), sensor, payload)
	if err := b.Put(seqKey(seq), v); err != nil {
		return fmt.Errorf("outbox: put %d: %w", seq, err)
	}
	d.added++
	d.depth++
	d.bytes += int64(8 + len(v))
	d.touched = true
	return nil
}

func (db *DB) putOutbox(tx *bolt.Tx, enq []enqueueReq, dels []uint64, d *outboxDelta) error {
	for _, e := range enq {
		if err := db.addOutbox(tx, e.lane, e.sensor, e.payload, d); err != nil {
			return err
		}
	}
	if len(dels) == 0 {
		return nil
	}
	b := tx.Bucket(bucketOutbox)
	for _, s := range dels {
		k := seqKey(s)
		v := b.Get(k)
		if v == nil {
			continue
		}
		d.depth--
		d.bytes -= int64(8 + len(v))
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("outbox: delete %d: %w", s, err)
		}
	}
	d.touched = true
	return nil
}

// evictOutbox drops rollup-lane entries, oldest first, that are older than
// OutboxMaxAge or keep the outbox over OutboxMaxBytes. It deletes at most
// budget keys and returns how many it deleted.
func (db *DB) evictOutbox(tx *bolt.Tx, budget int, d *outboxDelta) (int, error) {
	db.obMu.Lock()
	bytes := db.obBytes + d.bytes
	db.obMu.Unlock()
	cutoff := db.opts.Now().Add(-db.opts.OutboxMaxAge)
	b := tx.Bucket(bucketOutbox)
	c := b.Cursor()
	n, visited := 0, 0
	for k, v := c.First(); k != nil && n < budget && visited < 4*budget; visited++ {
		if len(v) == 0 || v[0] != 'r' {
			k, v = c.Next()
			continue
		}
		old := outboxCreated(v).Before(cutoff)
		if !old && bytes <= db.opts.OutboxMaxBytes {
			break
		}
		size := int64(8 + len(v))
		key := append([]byte(nil), k...)
		if err := c.Delete(); err != nil {
			return n, fmt.Errorf("outbox: evict %x: %w", key, err)
		}
		n++
		bytes -= size
		d.depth--
		d.bytes -= size
		d.touched = true
		k, v = c.Seek(key)
	}
	return n, nil
}

// applyOutbox updates the counters after a successful commit and signals
// OutboxNotify when entries were added.
func (db *DB) applyOutbox(d outboxDelta) {
	if !d.touched {
		return
	}
	var oldest time.Time
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		if _, v := tx.Bucket(bucketOutbox).Cursor().First(); v != nil {
			oldest = outboxCreated(v)
		}
		return nil
	})
	db.obMu.Lock()
	db.obDepth += d.depth
	db.obBytes += d.bytes
	db.obOldest = oldest
	depth, bytes := db.obDepth, db.obBytes
	db.obMu.Unlock()
	db.m.outboxDepth.Set(float64(depth))
	db.m.outboxBytes.Set(float64(bytes))
	if d.added > 0 {
		select {
		case db.notify <- struct{}{}:
		default:
		}
	}
}

func (db *DB) loadOutboxStats() error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		if b == nil {
			return fmt.Errorf("outbox: %w", errNoBucket)
		}
		c := b.Cursor()
		first := true
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if first {
				db.obOldest = outboxCreated(v)
				first = false
			}
			db.obDepth++
			db.obBytes += int64(len(k) + len(v))
		}
		db.m.outboxDepth.Set(float64(db.obDepth))
		db.m.outboxBytes.Set(float64(db.obBytes))
		return nil
	})
}

// OutboxPeek returns up to n entries with Seq > afterSeq, oldest first.
func (db *DB) OutboxPeek(afterSeq uint64, n int) ([]OutboxEntry, error) {
	if n <= 0 {
		return nil, nil
	}
	var out []OutboxEntry
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		var k, v []byte
		if afterSeq == ^uint64(0) {
			return nil
		}
		start := binary.BigEndian.AppendUint64(nil, afterSeq+1)
		for k, v = c.Seek(start); k != nil && len(out) < n; k, v = c.Next() {
			e, err := decodeOutbox(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: outbox peek: %w", db.path, err)
	}
	return out, nil
}

// OutboxStats returns the committed outbox depth, its bytes (keys and
// values) and the creation time of the oldest entry (zero when empty).
func (db *DB) OutboxStats() (depth int, bytes int64, oldest time.Time) {
	db.obMu.Lock()
	defer db.obMu.Unlock()
	if db.obDepth == 0 {
		return 0, 0, time.Time{}
	}
	return db.obDepth, db.obBytes, db.obOldest
}

// OutboxNotify is signalled (capacity 1, never blocking the writer) after a
// commit that added outbox entries.
func (db *DB) OutboxNotify() <-chan struct{} { return db.notify }
