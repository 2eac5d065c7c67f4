package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// retentionResult is what one retention step deleted (and counted).
type retentionResult struct {
	rawExpired int // raw readings past RawRetention or over MaxRawPerSensor
	trimmed    int // raw readings trimmed for the byte budget
	rollups    int
	alerts     int
	evicted    int  // rollup-lane outbox entries
	counted    int  // sensors of an older file whose readings it counted (readingCount)
	behind     bool // the step used its whole budget; run another soon
}

func (r retentionResult) deleted() int {
	return r.rawExpired + r.trimmed + r.rollups + r.alerts + r.evicted
}

// retain runs one retention step in tx, deleting at most retentionChunk keys:
// expired raw readings and rollups, per-sensor caps, old resolved alerts,
// rollup-lane outbox eviction, then the oldest raw readings while the pages
// in use leave less than the reserve of MaxBytes free (or always, with
// force). Alerts and alert-lane outbox entries are never trimmed for bytes.
func (db *DB) retain(tx *bolt.Tx, ob *outboxDelta, force bool) (retentionResult, error) {
	var res retentionResult
	budget := retentionChunk
	now := db.opts.Now()
	inUse := tx.Size() - int64(db.bolt.Stats().FreeAlloc)
	overBytes := force || db.overBytes(inUse)
	db.log.Debug("storage retention step", "in_use", inUse, "tx_size", tx.Size(), "free", db.bolt.Stats().FreeAlloc,
		"reserve", db.reserve(), "over", overBytes)

	rawCut := tsNano(now.Add(-db.opts.RawRetention))
	rb := tx.Bucket(bucketReadings)
	var sensors []string
	_ = rb.ForEach(func(k, v []byte) error {
		if v == nil {
			sensors = append(sensors, string(k))
		}
		return nil
	})
	// A pass over the sensors reads each one's oldest pages (see
	// sensorRead). It is skipped while the writer's floors say nothing is
	// old enough to go.
	rawDue := db.rawDue(rawCut)
	rawFloor := uint64(math.MaxUint64) // the oldest reading kept
	for _, s := range sensors {
		if budget == 0 || !rawDue {
			break
		}
		db.sensorRead(tx)
		b := rb.Bucket([]byte(s))
		b.FillPercent = fillPercent
		if b.Sequence() == 0 {
			res.counted++
		}
		cnt, err := readingCount(b)
		if err != nil {
			return res, fmt.Errorf("sensor %q: count readings: %w", s, err)
		}
		excess := 0
		if most := db.opts.MaxRawPerSensor; most > 0 {
			excess = cnt - most
		}
		n, err := db.dropRaw(b, budget, func(ts uint64, i int) bool {
			if i < excess || ts < rawCut {
				return true
			}
			rawFloor = min(rawFloor, ts)
			return false
		})
		if err != nil {
			return res, fmt.Errorf("sensor %q: raw retention: %w", s, err)
		}
		budget -= n
		res.rawExpired += n
	}

	if rawDue {
		db.w.rawFloor = floorAfter(rawFloor, budget)
		db.w.overCap = budget == 0 // a pass cut short may have left some over
	}

	rollCut := tsKey(nil, now.Add(-db.opts.RollupRetention))
	rlb := tx.Bucket(bucketRollups)
	var rsensors [][]byte
	_ = rlb.ForEach(func(k, v []byte) error {
		if v == nil {
			rsensors = append(rsensors, bytes.Clone(k))
		}
		return nil
	})
	rollDue := floorDue(db.w.rollFloor, binary.BigEndian.Uint64(rollCut))
	rollFloor := uint64(math.MaxUint64) // the oldest rollup kept
	for _, s := range rsensors {
		if budget == 0 || !rollDue {
			break
		}
		db.sensorRead(tx)
		b := rlb.Bucket(s)
		b.FillPercent = fillPercent
		n, err := deleteOldest(b, budget, func(k []byte, _ int) bool {
			if bytes.Compare(k, rollCut) < 0 {
				return false
			}
			rollFloor = min(rollFloor, binary.BigEndian.Uint64(k))
			return true
		})
		if err != nil {
			return res, fmt.Errorf("sensor %q: rollup retention: %w", s, err)
		}
		budget -= n
		res.rollups += n
	}

	if rollDue {
		db.w.rollFloor = floorAfter(rollFloor, budget)
	}

	if budget > 0 {
		n, err := db.expireAlerts(tx, rollCut, budget)
		if err != nil {
			return res, err
		}
		budget -= n
		res.alerts = n
	}
	if budget > 0 {
		n, err := db.evictOutbox(tx, budget, ob)
		if err != nil {
			return res, err
		}
		budget -= n
		res.evicted = n
	}
	if overBytes && budget > 0 {
		n, err := db.trimRaw(rb, sensors, budget)
		if err != nil {
			return res, err
		}
		budget -= n
		res.trimmed = n
		if n == 0 { // no raw readings left: the oldest rollups go next
			names := make([]string, len(rsensors))
			for i, s := range rsensors {
				names[i] = string(s)
			}
			n, err := db.trimOldest(rlb, names, budget)
			if err != nil {
				return res, err
			}
			budget -= n
			res.trimmed += n
		}
	}
	res.behind = budget == 0
	return res, nil
}

// rawDue reports whether raw retention may have readings to delete: one
// older than cut, or a sensor over MaxRawPerSensor.
func (db *DB) rawDue(cut uint64) bool {
	return floorDue(db.w.rawFloor, cut) || db.w.overCap
}

// floorDue reports whether anything may be older than cut, given the
// floor (nothing stored is older; 0: unknown).
func floorDue(floor, cut uint64) bool { return floor == 0 || cut > floor }

// floorAfter is the floor a pass over every sensor leaves: the oldest
// entry it kept, or unknown (0) if it ran out of budget, since it may have
// stopped before it saw a sensor's oldest.
func floorAfter(oldest uint64, budget int) uint64 {
	if budget == 0 {
		return 0
	}
	return oldest
}

// deleteOldest deletes keys of b from the first on, until stop(key, deleted)
// is true or max keys are gone. It re-seeks after each delete, because
// Cursor.Delete may move the cursor.
func deleteOldest(b *bolt.Bucket, max int, stop func(k []byte, deleted int) bool) (int, error) {
	c := b.Cursor()
	n := 0
	for k, _ := c.First(); k != nil && n < max; {
		if stop(k, n) {
			break
		}
		key := bytes.Clone(k)
		if err := c.Delete(); err != nil {
			return n, fmt.Errorf("delete %x: %w", key, err)
		}
		n++
		k, _ = c.Seek(key)
	}
	return n, nil
}

// trimPasses bounds the trim passes one trimRaw call starts.
const trimPasses = 4

// trimRaw deletes up to budget of the oldest raw readings for the byte
// budget. It works in passes: a pass picks a cut time an eighth of the way
// from the oldest stored reading to the newest and deletes every sensor's
// readings before it, sensor by sensor, resuming across transactions. Each
// sensor loses whole leaves from the old end of its tree, so a step frees
// many pages and dirties few; no sensor loses its newest readings before
// every sensor has lost its oldest.
func (db *DB) trimRaw(rb *bolt.Bucket, sensors []string, budget int) (int, error) {
	w := &db.w
	total := 0
	for pass := 0; budget > 0 && pass < trimPasses; {
		if w.trimCut == 0 || w.trimNext >= len(sensors) {
			pass++
			var oldest, newest uint64
			found := false
			for _, s := range sensors {
				db.sensorRead(rb.Tx())
				c := rb.Bucket([]byte(s)).Cursor()
				// Last only on a bucket with a key: an earlier pass of this
				// transaction may have deleted all of it, and bbolt's
				// Cursor.Last loops forever over a bucket whose leaves are
				// all empty (not rebalanced until the commit).
				first, _ := c.First()
				if len(first) < 8 {
					continue
				}
				last, _ := c.Last()
				if len(last) < 8 {
					continue
				}
				f, l := binary.BigEndian.Uint64(first), binary.BigEndian.Uint64(last)
				if !found || f < oldest {
					oldest = f
				}
				if !found || l > newest {
					newest = l
				}
				found = true
			}
			if !found {
				w.trimCut = 0
				return total, nil
			}
			// at least one nanosecond past the oldest: a pass always deletes
			w.trimCut, w.trimNext = oldest+(newest-oldest)/8+1, 0
		}
		for ; w.trimNext < len(sensors) && budget > 0; w.trimNext++ {
			db.sensorRead(rb.Tx())
			name := sensors[w.trimNext]
			b := rb.Bucket([]byte(name))
			if b == nil {
				continue
			}
			b.FillPercent = fillPercent
			n, err := db.dropRaw(b, budget, func(ts uint64, _ int) bool { return ts < w.trimCut })
			if err != nil {
				return total, fmt.Errorf("sensor %q: byte budget trim: %w", name, err)
			}
			budget -= n
			total += n
			if budget == 0 {
				break // this sensor may have more before the cut
			}
		}
	}
	return total, nil
}

// trimOldest deletes up to budget of the oldest keys across the sensor
// buckets (of rollups) under rb, oldest first, in chunks of at most 1000
// from one sensor.
func (db *DB) trimOldest(rb *bolt.Bucket, sensors []string, budget int) (int, error) {
	total := 0
	for budget > 0 {
		var oldest []byte
		var name string
		var ob *bolt.Bucket
		for _, s := range sensors {
			db.sensorRead(rb.Tx())
			b := rb.Bucket([]byte(s))
			if b == nil {
				continue
			}
			if k, _ := b.Cursor().First(); k != nil && (oldest == nil || bytes.Compare(k, oldest) < 0) {
				oldest, name, ob = bytes.Clone(k), s, b
			}
		}
		if ob == nil {
			break
		}
		n, err := deleteOldest(ob, min(budget, 1000), func([]byte, int) bool { return false })
		if err != nil {
			return total, fmt.Errorf("sensor %q: byte budget trim: %w", name, err)
		}
		if n == 0 {
			break
		}
		budget -= n
		total += n
	}
	return total, nil
}

// dropRaw is dropOldest on a sensor's raw bucket, keeping its reading
// count (readingCount) in step.
func (db *DB) dropRaw(b *bolt.Bucket, max int, drop func(ts uint64, deleted int) bool) (int, error) {
	if _, err := readingCount(b); err != nil {
		return 0, fmt.Errorf("count readings: %w", err)
	}
	n, err := dropOldest(b, &db.w.arena, max, drop)
	if err != nil {
		return n, err
	}
	if _, err := addReadings(b, -n); err != nil {
		return n, fmt.Errorf("count readings: %w", err)
	}
	return n, nil
}

// dropSensors is how many sensors retention reads between drops of the
// file mapping (dropMapped). A pass reads the oldest pages of every sensor,
// and each read maps up to 16 cached pages around it: the first pass after
// a start mapped 100 MB of a full 238 MB file at 5000 sensors.
const dropSensors = 256

// sensorRead counts a sensor a retention pass is about to read, and drops
// the file mapping every dropSensors of them.
func (db *DB) sensorRead(tx *bolt.Tx) {
	if db.w.passReads++; db.w.passReads%dropSensors == 0 {
		db.dropMapped(tx.Size())
	}
}

// expireAlerts deletes resolved alerts that started before cut (oldest
// first, stopping at the first alert that is not resolved or not old).
func (db *DB) expireAlerts(tx *bolt.Tx, cut []byte, budget int) (int, error) {
	ab, ib := tx.Bucket(bucketAlerts), tx.Bucket(bucketAlertIDs)
	n := 0
	c := ab.Cursor()
	for k, v := c.First(); k != nil && n < budget && bytes.Compare(k[:8], cut) < 0; {
		var a agent.Alert
		if err := json.Unmarshal(v, &a); err != nil || a.State != agent.AlertResolved {
			break
		}
		key := bytes.Clone(k)
		if err := c.Delete(); err != nil {
			return n, fmt.Errorf("alert %s: expire: %w", a.ID, err)
		}
		if err := ib.Delete([]byte(a.ID)); err != nil {
			return n, fmt.Errorf("alert %s: expire index: %w", a.ID, err)
		}
		n++
		k, v = c.Seek(key)
	}
	return n, nil
}

// retentionDone records a committed retention step.
func (db *DB) retentionDone(r retentionResult) {
	db.m.dropRawRetention.Add(float64(r.rawExpired))
	db.m.dropByteBudget.Add(float64(r.trimmed))
	db.m.dropOutboxEvicted.Add(float64(r.evicted))
	db.w.behind = r.behind
	db.w.nextRet = time.Now().Add(retentionEvery)
	if r.trimmed > 0 {
		db.log.Debug("storage trimmed raw readings for the byte budget", "count", r.trimmed)
	}
}

// retentionOnly runs a retention step in its own transaction, committed only
// if it deleted or counted something (an empty commit would still cost two
// fsyncs).
// It returns the number of raw readings deleted.
func (db *DB) retentionOnly() int { return db.retentionStep(false) }

// retentionStep is retentionOnly; force trims for the byte budget whatever
// the pages in use (the file hit its size limit).
func (db *DB) retentionStep(force bool) int {
	tx, err := db.bolt.Begin(true)
	if err != nil {
		db.retentionFailed(err)
		return 0
	}
	var ob outboxDelta
	start := time.Now()
	res, err := db.retain(tx, &ob, force)
	if err != nil {
		_ = tx.Rollback()
		db.retentionFailed(err)
		return 0
	}
	if res.deleted() == 0 && res.counted == 0 {
		_ = tx.Rollback()
		db.retentionDone(res)
		return 0
	}
	if err := tx.Commit(); err != nil {
		db.retentionFailed(err)
		return 0
	}
	db.retentionDone(res)
	db.readyErr.Store(nil)
	db.m.commits.Inc()
	db.m.commitDuration.Observe(time.Since(start).Seconds())
	db.countPages()
	db.applyOutbox(ob)
	db.updateFileSize()
	return res.rawExpired + res.trimmed
}

func (db *DB) retentionFailed(err error) {
	db.w.forget()
	db.w.behind = false
	db.w.nextRet = time.Now().Add(retryEvery)
	db.m.commitFailures.Inc()
	ferr := fmt.Errorf("storage %s: retention: %w: %w", db.path, agent.ErrStorageFailed, err)
	db.readyErr.Store(&ferr)
	db.log.Warn("storage retention failed", "err", err)
}
