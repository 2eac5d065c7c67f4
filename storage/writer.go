package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/edgeagent/edgeagent/agent"
)

// batch is what one group commit writes. The writer owns it once taken.
type batch struct {
	entries  []byte          // readings, encoded (appendEntry)
	n        int             // readings in entries
	commits  []*agent.Commit // the readings' Commits that are not nil
	alerts   []agent.Alert
	enqueues []enqueueReq
	deletes  []uint64
	states   map[string][]byte
	waiters  int       // callers or readings waiting for durability
	fold     bool      // fold the whole journal after the commit (Flush)
	first    time.Time // when the first entry arrived (wall clock)
	done     chan struct{}
	err      error // set before done is closed
}

type enqueueReq struct {
	lane    byte
	sensor  string
	payload []byte
}

// maxSensorLen keeps sensor ids well under bbolt's key limit (validSensor).
const maxSensorLen = 1024

func newBatch() *batch { return &batch{done: make(chan struct{})} }

func (b *batch) empty() bool {
	return b.n == 0 && len(b.alerts) == 0 && len(b.enqueues) == 0 &&
		len(b.deletes) == 0 && len(b.states) == 0
}

func (b *batch) touch() {
	if b.first.IsZero() {
		b.first = time.Now()
	}
}

// writerState is touched only by the writer goroutine (and Open, before it starts).
type writerState struct {
	sensors    map[string]string // sensor -> info as stored: kind "\x00" unit
	held       []agent.Alert     // alerts of failed commits, retried
	failing    bool
	nextRet    time.Time // when the next retention pass is due (wall clock)
	behind     bool      // the last retention pass hit its chunk limit
	rawFloor   uint64    // no raw reading is older (ns); 0: unknown, a retention pass finds out
	overCap    bool      // a sensor may hold more than MaxRawPerSensor readings
	passReads  int       // sensors retention read (sensorRead)
	rollFloor  uint64    // no rollup is older (minute, ns); 0: unknown
	pageByte   int64     // bbolt TxStats.PageAlloc after the last commit
	inUse      int64     // bytes of pages in use after the last commit
	maxDirty   int64     // decaying maximum of the bytes one commit allocated
	trimCut    uint64    // byte-budget trim pass: raw readings before this time go
	trimNext   int       // byte-budget trim pass: next sensor (by name order)
	jseq       uint64    // next journal sequence (unique across shards)
	shards     int       // journal shards new records go to (shardOf)
	jbufs      [][]byte  // per shard: the chunk being filled (putJournal)
	jCount     int       // records in the journal
	jFirst     time.Time // when the oldest unfolded commit was made (wall clock)
	nextFold   time.Time // a failed fold is retried after this
	foldShrink int       // folds move at most foldMax>>foldShrink records (failed folds raise it)
	part       int       // sensors a fold part moves at most (partSensors; tests lower it)
	delKeys    int       // journal keys a fold transaction deletes at most (deleteKeys; tests lower it)
	arena      arena
	roll       map[rollKey]*rollupAgg
	groupOf    map[string]int32 // fold scratch: sensor -> group
	runs       []runReading     // fold scratch: one sensor's readings
	released   time.Time        // when the file mapping's pages were last dropped (mapped_linux.go)
}

type rollKey struct {
	sensor string
	minute uint64
}

func (w *writerState) init() {
	w.shards = 1
	w.part = partSensors
	w.delKeys = deleteKeys
	w.sensors = map[string]string{}
	w.roll = map[rollKey]*rollupAgg{}
	w.groupOf = map[string]int32{}
}

// forget drops the caches a rolled-back transaction may have made wrong.
func (w *writerState) forget() {
	clear(w.sensors)
	w.rawFloor, w.rollFloor = 0, 0
}

func (db *DB) kickWriter() {
	select {
	case db.kick <- struct{}{}:
	default:
	}
}

// Write queues rs and as for the next group commit and returns without
// waiting for disk, except for backpressure while a full batch waits for the
// writer. It copies both slices. Every reading's Commit is completed after
// its commit, with an error wrapping agent.ErrStorageFailed if the commit
// failed or agent.ErrClosed after Close. Suppressed results go only into the
// rollups. Alerts (and, with Options.Outbox, their outbox entries) ride in the
// same commit; an alert that fails to commit is held in memory and retried.
func (db *DB) Write(rs []agent.Result, as []agent.Alert) {
	if len(rs) == 0 && len(as) == 0 {
		return
	}
	// Encode before taking the lock: the shards call Write at the same
	// time, and encoding under it made them wait for each other.
	scratch := entryScratch.Get().(*[]byte)
	defer entryScratch.Put(scratch)
	es, n, waiters := (*scratch)[:0], 0, 0
	for i := range rs {
		if !validSensor(rs[i].Sensor) {
			defer rs[i].Commit.Done(fmt.Errorf("storage: sensor id %q: %w", rs[i].Sensor, agent.ErrInvalidReading))
			db.m.dropInvalid.Inc()
			continue
		}
		es = appendEntry(es, &rs[i])
		n++
		if rs[i].Commit != nil {
			waiters++
		}
	}
	if cap(es) <= maxScratch {
		*scratch = es[:0]
	}
	db.mu.Lock()
	for db.cur.n >= db.batchLimit() && !db.closing {
		db.space.Wait()
	}
	if db.closing {
		db.mu.Unlock()
		err := fmt.Errorf("storage %s: %w", db.path, agent.ErrClosed)
		for i := range rs {
			if validSensor(rs[i].Sensor) {
				rs[i].Commit.Done(err)
			}
		}
		db.m.dropClosed.Add(float64(n + len(as)))
		return
	}
	b := db.cur
	b.touch()
	b.entries = append(b.entries, es...)
	b.n += n
	if waiters > 0 { // QoS 0 readings have no Commit
		for i := range rs {
			if rs[i].Commit != nil && validSensor(rs[i].Sensor) {
				b.commits = append(b.commits, rs[i].Commit)
			}
		}
		b.waiters += waiters
	}
	for i := range as {
		if as[i].ID == "" {
			db.m.dropInvalid.Inc()
			continue
		}
		b.alerts = append(b.alerts, as[i])
	}
	db.mu.Unlock()
	db.kickWriter()
}

// validSensor reports whether a sensor id can be stored: not empty, and
// well under bbolt's key limit.
func validSensor(id string) bool { return id != "" && len(id) <= maxSensorLen }

// entryScratch holds the buffers Write encodes entries into before it
// takes the lock; one bigger than maxScratch is not kept.
var entryScratch = sync.Pool{New: func() any { return new([]byte) }}

const maxScratch = 64 << 10

// batchLimit is the batch size at which Write blocks; db.mu is held.
func (db *DB) batchLimit() int {
	if db.folding {
		return 2 * db.opts.MaxBatch
	}
	return db.opts.MaxBatch
}

// submit runs fill on the current batch as a waiter and waits for its commit.
func (db *DB) submit(ctx context.Context, fill func(b *batch)) error {
	db.mu.Lock()
	if db.closing {
		db.mu.Unlock()
		return fmt.Errorf("storage %s: %w", db.path, agent.ErrClosed)
	}
	b := db.cur
	b.touch()
	if fill != nil {
		fill(b)
	}
	b.waiters++
	db.mu.Unlock()
	db.kickWriter()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return fmt.Errorf("storage %s: %w: %w", db.path, agent.ErrCommitTimedOut, ctx.Err())
	}
}

// Flush commits everything written so far and waits for it, or for ctx.
// It also folds the journal into the per-sensor buckets.
func (db *DB) Flush(ctx context.Context) error {
	return db.submit(ctx, func(b *batch) { b.fold = true })
}

// SaveState stores detector/filter snapshots (sensor -> bytes) in the next
// commit and returns once they are durable. Sensors not in states keep theirs.
func (db *DB) SaveState(states map[string][]byte) error {
	// The commit reads the states' bytes while this call waits for it, so
	// they are not copied; the map is, as one batch merges several callers'.
	return db.submit(context.Background(), func(b *batch) {
		if b.states == nil {
			b.states = make(map[string][]byte, len(states))
		}
		maps.Copy(b.states, states)
	})
}

// OutboxEnqueue adds an entry on lane "rollup" or "alert" in the next commit
// and returns once it is durable.
func (db *DB) OutboxEnqueue(lane, sensor string, payload []byte) error {
	lb, err := laneByte(lane)
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	req := enqueueReq{lane: lb, sensor: sensor, payload: bytes.Clone(payload)}
	return db.submit(context.Background(), func(b *batch) { b.enqueues = append(b.enqueues, req) })
}

// OutboxDelete removes the entries with these sequence numbers in the next
// commit and returns once that is durable. Unknown numbers are ignored.
func (db *DB) OutboxDelete(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	cp := append([]uint64(nil), seqs...)
	return db.submit(context.Background(), func(b *batch) { b.deletes = append(b.deletes, cp...) })
}

// run is the writer goroutine: it takes the current batch when it is due and
// commits it; between batches it runs retention. Close stops it after a last
// commit.
func (db *DB) run() {
	defer close(db.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	db.w.nextRet = time.Now()
	worked := false // the last turn ran a transaction (it may have mapped pages)
	for {
		db.releaseMapped(false)
		db.mu.Lock()
		b := db.cur
		closing := db.closing
		now := time.Now()
		empty, first, waiters := b.empty(), b.first, b.waiters
		pending := !empty || len(db.w.held) > 0
		due := closing || db.dueLocked(b, now)
		if len(db.w.held) > 0 && b.empty() && b.waiters == 0 {
			// only held alerts: retry at a slower pace
			due = closing || !now.Before(db.w.nextRet)
		}
		if due {
			db.nextBatchLocked()
		}
		db.mu.Unlock()

		if due {
			if pending || waiters > 0 {
				db.commit(b)
			} else {
				close(b.done)
			}
			added := b.n
			db.recycle(b)
			if closing {
				return
			}
			// Pay retention debt before the next batch, one short
			// transaction at a time, until it deleted as many raw readings
			// as the batch added: producers feel it as backpressure and
			// the file stays within its budget.
			for debt := added; db.w.behind && debt > 0 && !db.w.failing; {
				n := db.retentionOnly()
				if n == 0 {
					break
				}
				debt -= n
			}
			// Keep the next commit's reserve free below MaxBytes.
			for range maxTrimSteps {
				if !db.overBudget() || db.w.failing || db.retentionOnly() == 0 {
					break
				}
			}
			if db.foldDue(time.Now()) && !db.w.failing {
				db.fold(true)
			}
			worked = true
			continue
		}
		if !now.Before(db.w.nextRet) || db.w.behind {
			db.retentionOnly()
			worked = true
			continue
		}
		if db.foldDue(now) {
			db.fold(true)
			worked = true
			continue
		}

		wait := db.w.nextRet.Sub(now)
		if db.w.jCount > 0 {
			at := db.w.jFirst.Add(db.opts.FoldInterval)
			if at.Before(db.w.nextFold) {
				at = db.w.nextFold
			}
			wait = min(wait, at.Sub(now))
		}
		if !empty {
			wait = min(wait, first.Add(db.opts.CommitInterval).Sub(now))
		}
		if worked {
			// going idle: drop what the last turns mapped now, not at
			// the next wake-up (which may be a second away)
			db.releaseMapped(true)
			worked = false
		}
		timer.Reset(max(wait, 0))
		select {
		case <-db.kick:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// dueLocked reports whether batch b is due for its commit; db.mu is held.
func (db *DB) dueLocked(b *batch, now time.Time) bool {
	return b.waiters > 0 || b.n >= db.opts.MaxBatch ||
		(!b.empty() && now.Sub(b.first) >= db.opts.CommitInterval)
}

// nextBatchLocked starts a new current batch (the one before goes to its
// commit); db.mu is held.
func (db *DB) nextBatchLocked() {
	db.cur = newBatch()
	// the buffers of the last committed batch, emptied: a batch does not
	// grow them from zero every time
	db.cur.entries, db.cur.commits = db.spare.entries, db.spare.commits
	db.spare = spareBufs{}
	db.space.Broadcast()
}

// commitBetween commits the current batch if it is due, between two
// transactions of a fold: a fold at max rate takes a few hundred
// milliseconds, and without this the readings of that time wait in memory
// (up to two batches) and QoS 1 acks wait for the whole fold. A Flush's
// batch waits for its fold to end, and so does every batch while the file
// lacks the room for a commit: the fold's journal pages are free only
// after it.
func (db *DB) commitBetween() {
	db.measureInUse()
	if db.overBudget() {
		return
	}
	db.mu.Lock()
	b := db.cur
	due := !db.closing && !b.fold && db.dueLocked(b, time.Now())
	if due {
		db.nextBatchLocked()
	}
	db.mu.Unlock()
	if due {
		db.commit(b)
		db.recycle(b)
	}
}

// recycle keeps b's buffers, emptied, for the batch after next. b itself
// is not reused: waiters may still read b.err.
func (db *DB) recycle(b *batch) {
	es, cs := b.entries, b.commits
	clear(cs) // drop the Commit references
	b.entries, b.commits = nil, nil
	if cap(es) > 4*db.opts.MaxBatch*typicalEntry {
		return // a burst of huge Writes: let it go
	}
	db.mu.Lock()
	if db.spare.entries == nil {
		db.spare = spareBufs{es[:0], cs[:0]}
	}
	db.mu.Unlock()
}

// typicalEntry is about the size of a batch entry with a score and band
// (78 bytes for the simulator's readings).
const typicalEntry = 80

// spareBufs are a committed batch's buffers, emptied, for reuse.
type spareBufs struct {
	entries []byte
	commits []*agent.Commit
}

// commit writes b (plus held alerts and a retention step) in one transaction
// and completes everyone waiting on it.
func (db *DB) commit(b *batch) {
	w := &db.w
	alerts := b.alerts
	if len(w.held) > 0 {
		alerts = append(append([]agent.Alert(nil), w.held...), b.alerts...)
	}
	start := time.Now()
	var ob outboxDelta
	var raw int
	var ret retentionResult
	runRetention := !start.Before(w.nextRet) || w.behind || db.overBudget()
	var err error
	for attempt := 0; ; attempt++ {
		ob, raw, ret = outboxDelta{}, 0, retentionResult{}
		err = db.update(b, alerts, runRetention, &ob, &raw, &ret)
		if err == nil || !errors.Is(err, berrors.ErrMaxSizeReached) || attempt == maxSizeRetries {
			break
		}
		// The file cannot grow: free pages by trimming the oldest raw
		// readings in their own commits, then retry the same batch.
		w.forget()
		db.log.Warn("storage file at its size limit: trimming and retrying the batch",
			"attempt", attempt+1, "readings", b.n, "in_use", w.inUse, "reserve", db.reserve())
		db.m.sizeRetries.Inc()
		for range maxSizeTrimSteps {
			if db.retentionStep(true) == 0 {
				break
			}
		}
	}
	elapsed := time.Since(start)
	if err != nil {
		db.commitFailed(b, alerts, err)
		return
	}
	if runRetention {
		db.retentionDone(ret)
	}
	if b.n > 0 {
		if w.jCount == 0 {
			w.jFirst = time.Now()
		}
		w.jCount += b.n
		db.m.journalReadings.Set(float64(w.jCount))
	}
	if b.fold { // Flush: everything into the per-sensor buckets
		for w.jCount > 0 {
			before := w.jCount
			if db.fold(false); w.jCount >= before {
				break // it failed: Flush reports the commit, the fold is retried
			}
		}
	}
	db.committed(b, raw, ob, elapsed)
}

// update writes b, alerts and, with runRetention, a retention step in one
// transaction.
func (db *DB) update(b *batch, alerts []agent.Alert, runRetention bool, ob *outboxDelta, raw *int, ret *retentionResult) error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		var err error
		if *raw, err = db.putJournal(tx, b.entries); err != nil {
			return err
		}
		if err := db.putAlerts(tx, alerts, ob); err != nil {
			return err
		}
		if err := db.putOutbox(tx, b.enqueues, b.deletes, ob); err != nil {
			return err
		}
		if len(b.states) > 0 {
			sb := tx.Bucket(bucketState)
			for k, v := range b.states {
				if err := sb.Put([]byte(k), v); err != nil {
					return fmt.Errorf("state %q: %w", k, err)
				}
			}
		}
		if runRetention {
			if *ret, err = db.retain(tx, ob, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// committed completes everyone waiting on b after its commit.
func (db *DB) committed(b *batch, raw int, ob outboxDelta, elapsed time.Duration) {
	w := &db.w
	w.held = nil
	if w.failing {
		w.failing = false
		db.log.Info("storage commits succeed again")
	}
	db.readyErr.Store(nil)
	db.m.commits.Inc()
	db.m.commitDuration.Observe(elapsed.Seconds())
	db.m.batchSize.Observe(float64(b.n))
	db.m.readingsWritten.Add(float64(raw))
	db.countPages()
	db.applyOutbox(ob)
	db.updateFileSize()
	for _, c := range b.commits {
		c.Done(nil)
	}
	close(b.done)
}

// overBudget reports whether the pages in use after the last commit leave
// less than reserve() of MaxBytes free (bbolt's stats are updated when a
// write tx closes, and count the pages it freed as free).
func (db *DB) overBudget() bool { return db.overBytes(db.w.inUse) }

func (db *DB) overBytes(inUse int64) bool {
	return inUse+db.reserve() > db.opts.MaxBytes
}

// reserve is the room the next commit needs below MaxBytes. bbolt writes
// copy-on-write: a commit allocates a new page for every page it changes and
// can only reuse pages freed by earlier commits, so the file's high-water
// mark is the pages in use plus the largest commit. With a bucket per sensor
// a commit touches at least one leaf per sensor in the batch, so with
// thousands of sensors that is tens of MiB, far more than a fixed fraction
// of the budget: the reserve follows the measured commits.
//
// It is capped at half the budget: a fold can dirty more than a tight budget
// holds, and an uncapped reserve then keeps the file "over budget" whatever
// is trimmed, so every batch paid dozens of trimming transactions (a writer
// that all but stopped). A commit that still hits MaxSize is trimmed for and
// retried.
func (db *DB) reserve() int64 {
	r := max(int64((1-trimHigh)*float64(db.opts.MaxBytes)), db.w.maxDirty*5/4)
	return min(r, db.opts.MaxBytes/2)
}

func (db *DB) countPages() {
	st := db.bolt.Stats()
	pa := st.TxStats.GetPageAlloc()
	d := pa - db.w.pageByte
	if d > 0 {
		// dirty pages plus the meta page written by every commit
		db.m.bytesWritten.Add(float64(d + int64(db.bolt.Info().PageSize)))
	}
	db.w.pageByte = pa
	// decays by 1/32 per commit: a burst is remembered for ~100 commits
	db.w.maxDirty = max(d, db.w.maxDirty-db.w.maxDirty/32)
	db.measureInUse()
}

// measureInUse sets w.inUse: the end of the last page in use less the free
// pages before it.
func (db *DB) measureInUse() {
	if hwm := db.highWater(); hwm > 0 {
		db.w.inUse = hwm - int64(db.bolt.Stats().FreeAlloc)
	}
}

// highWater is the end of the last page in use (what tx.Size reports).
func (db *DB) highWater() int64 {
	var n int64
	_ = db.bolt.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n
}

func (db *DB) commitFailed(b *batch, alerts []agent.Alert, err error) {
	w := &db.w
	w.forget()
	clear(w.roll)
	db.m.commitFailures.Inc()
	ferr := fmt.Errorf("storage %s: commit: %w: %w", db.path, agent.ErrStorageFailed, err)
	db.readyErr.Store(&ferr)
	if !w.failing {
		w.failing = true
		db.log.Error("storage commit failed", "err", err, "readings", b.n, "alerts", len(alerts))
	}
	if n := len(alerts) - db.opts.MaxPendingAlerts; n > 0 {
		db.m.dropAlertOverflow.Add(float64(n))
		db.log.Warn("storage dropped held alerts", "count", n)
		alerts = alerts[n:]
	}
	w.held = append([]agent.Alert(nil), alerts...)
	w.nextRet = time.Now().Add(retryEvery)
	db.m.dropCommitFailed.Add(float64(b.n))
	for _, c := range b.commits {
		c.Done(ferr)
	}
	b.err = ferr
	close(b.done)
	db.updateFileSize()
}

// sensorBucket returns the sensor's readings bucket, creating it, with its
// reading count known (readingCount).
func (db *DB) sensorBucket(rb *bolt.Bucket, sensor string) (*bolt.Bucket, error) {
	if sensor == "" {
		return nil, fmt.Errorf("empty sensor id: %w", agent.ErrInvalidReading)
	}
	b, err := rb.CreateBucketIfNotExists([]byte(sensor))
	if err != nil {
		return nil, fmt.Errorf("sensor %q: bucket: %w", sensor, err)
	}
	b.FillPercent = fillPercent
	if _, err := readingCount(b); err != nil {
		return nil, fmt.Errorf("sensor %q: count readings: %w", sensor, err)
	}
	return b, nil
}

// noteSensor records the sensor's info (kind "\x00" unit) when it changes.
func (db *DB) noteSensor(tx *bolt.Tx, sensor, info []byte) error {
	if old, ok := db.w.sensors[string(sensor)]; ok && old == string(info) {
		return nil
	}
	sb := tx.Bucket(bucketSensors)
	if v := sb.Get(sensor); !bytes.Equal(v, info) {
		// bbolt keeps Put's slices until the commit: copies
		if err := sb.Put(bytes.Clone(sensor), bytes.Clone(info)); err != nil {
			return fmt.Errorf("sensor %q: info: %w", sensor, err)
		}
	}
	db.w.sensors[string(sensor)] = string(info)
	return nil
}

// putRollups merges the batch's per-minute aggregates into the rollups bucket.
func (db *DB) putRollups(tx *bolt.Tx) error {
	rb := tx.Bucket(bucketRollups)
	for k, a := range db.w.roll {
		b, err := rb.CreateBucketIfNotExists([]byte(k.sensor))
		if err != nil {
			return fmt.Errorf("sensor %q: rollup bucket: %w", k.sensor, err)
		}
		b.FillPercent = fillPercent
		key := binary.BigEndian.AppendUint64(make([]byte, 0, 8), k.minute)
		db.w.rollFloor = min(db.w.rollFloor, k.minute)
		agg := *a
		if v := b.Get(key); v != nil {
			old, err := decodeRollup(v)
			if err != nil {
				return fmt.Errorf("sensor %q: rollup %x: %w", k.sensor, key, err)
			}
			old.merge(agg)
			agg = old
		}
		if err := b.Put(key, agg.encode(make([]byte, 0, rollupValueLen))); err != nil {
			return fmt.Errorf("sensor %q: put rollup: %w", k.sensor, err)
		}
	}
	clear(db.w.roll)
	return nil
}

// putAlerts stores each alert transition under its incident's key (the
// first transition's start time + ID), so later transitions of the same ID
// update it, and enqueues it for the uplink when Options.Outbox is set.
func (db *DB) putAlerts(tx *bolt.Tx, as []agent.Alert, ob *outboxDelta) error {
	if len(as) == 0 {
		return nil
	}
	ab, ib := tx.Bucket(bucketAlerts), tx.Bucket(bucketAlertIDs)
	ab.FillPercent = fillPercent
	for i := range as {
		a := as[i]
		if a.Gateway == "" {
			a.Gateway = db.opts.Gateway
		}
		v, err := json.Marshal(&a)
		if err != nil { // NaN in a float: retrying would never succeed
			db.log.Error("storage dropped an alert it cannot encode", "alert", a.ID, "err", err)
			db.m.dropInvalid.Inc()
			continue
		}
		key := ib.Get([]byte(a.ID))
		if key == nil {
			start := a.StartedAt
			if start.IsZero() {
				start = a.UpdatedAt
			}
			key = append(tsKey(nil, start), a.ID...)
			if err := ib.Put([]byte(a.ID), key); err != nil {
				return fmt.Errorf("alert %s: index: %w", a.ID, err)
			}
		} else {
			key = bytes.Clone(key)
		}
		if err := ab.Put(key, v); err != nil {
			return fmt.Errorf("alert %s: put: %w", a.ID, err)
		}
		if db.opts.Outbox {
			if err := db.addOutbox(tx, 'a', a.Sensor, v, ob); err != nil {
				return fmt.Errorf("alert %s: %w", a.ID, err)
			}
		}
	}
	return nil
}

var errNoBucket = errors.New("bucket missing")

// arena hands out byte slices that stay valid until the commit (bbolt keeps
// Put's slices), with one allocation per 64 KiB instead of one per key and
// value.
type arena struct{ chunk []byte }

const arenaChunk = 64 << 10

// alloc returns a new slice of n bytes.
func (a *arena) alloc(n int) []byte {
	if cap(a.chunk)-len(a.chunk) < n {
		a.chunk = make([]byte, 0, max(arenaChunk, n))
	}
	at := len(a.chunk)
	a.chunk = a.chunk[:at+n]
	return a.chunk[at : at+n : at+n]
}
