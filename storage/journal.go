package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/edgeagent/edgeagent/agent"
)

// The journal is where a group commit puts its readings: one time-ordered
// bucket, keyed by an 8-byte big-endian sequence, each value a chunk of
// records of up to journalChunk bytes. A commit of readings from thousands
// of sensors therefore dirties a few journal leaves instead of one raw and
// one rollup leaf per sensor. The writer folds the journal into the
// per-sensor raw and rollup buckets in large chunks (DB.fold), which
// amortises those pages over many readings per sensor, and deletes the
// folded keys in the same transaction. Queries merge the unfolded tail.
//
// Record: uvarint body length, then the body: uvarint sensor length, sensor,
// 8-byte BE unix-nano time, the reading value (encodeReading) whose mask has
// maskSuppressed set for a result that goes only into the rollups.
const (
	maskSuppressed = 0x80
	// journalChunk bounds a journal value so that a leaf is one 4 KiB page:
	// bbolt splits a node only when it has more than 4 keys, so 4 values
	// must fit in a page. Bigger ones made multi-page leaves, a fresh
	// allocation of contiguous pages per leaf per commit (a third of the
	// agent's allocated bytes at max rate).
	journalChunk = 900
	// foldMax bounds the readings one fold transaction moves; after
	// failed folds, foldMax>>maxFoldShrink at the least.
	foldMax       = 200_000
	maxFoldShrink = 8
)

// jrec is one decoded journal record; its slices point into the value.
type jrec struct {
	rec    []byte // the whole record, length prefix included
	sensor []byte
	ts     uint64
	val    []byte // encodeReading form, mask possibly with maskSuppressed
}

// jref is a jrec in a third of the memory, for the fold's list of up to
// foldMax records.
type jref struct {
	rec []byte
	so  uint8  // offset of the sensor id in rec
	sl  uint16 // its length
}

func (j *jref) sensor() []byte { return j.rec[j.so : int(j.so)+int(j.sl)] }

// tail is the record's 8-byte time and value.
func (j *jref) tail() []byte { return j.rec[int(j.so)+int(j.sl):] }

// nextTimedValue splits the first time and value (a jref.tail) off p.
func nextTimedValue(p []byte) (ts uint64, val, rest []byte, err error) {
	if len(p) < 8+11 {
		return 0, nil, nil, errCorrupt
	}
	n, err := valueLen(p[8]&^maskSuppressed, p[8:])
	if err != nil {
		return 0, nil, nil, err
	}
	return binary.BigEndian.Uint64(p), p[8 : 8+n], p[8+n:], nil
}

func (r *jrec) ref() jref {
	return jref{rec: r.rec, so: uint8(len(r.rec) - len(r.val) - 8 - len(r.sensor)), sl: uint16(len(r.sensor))}
}

func (r *jrec) suppressed() bool { return r.val[0]&maskSuppressed != 0 }
func (r *jrec) value() float64   { return readF64(r.val[3:11]) }

// appendRecord appends r's journal record to dst.
func appendRecord(dst []byte, r *agent.Result) []byte {
	var body [160]byte // a record with score, detector and band is ~70 bytes: no allocation
	b := binary.AppendUvarint(body[:0], uint64(len(r.Sensor)))
	b = append(b, r.Sensor...)
	b = binary.BigEndian.AppendUint64(b, tsNano(r.Time))
	at := len(b)
	b = encodeReading(b, r)
	if r.Suppressed {
		b[at] |= maskSuppressed
	}
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// forRecords calls fn for every record of the journal value v. The
// record's slices are valid only as long as v.
func forRecords(v []byte, fn func(r jrec) error) error {
	for len(v) > 0 {
		n, w := binary.Uvarint(v)
		if w <= 0 || uint64(len(v)-w) < n {
			return fmt.Errorf("journal record: %w", errCorrupt)
		}
		rec, body := v[:w+int(n)], v[w:w+int(n)]
		v = v[w+int(n):]
		sl, w := binary.Uvarint(body)
		if w <= 0 || uint64(len(body)-w) < sl+8+11 {
			return fmt.Errorf("journal record: %w", errCorrupt)
		}
		r := jrec{rec: rec, sensor: body[w : w+int(sl)]}
		body = body[w+int(sl):]
		r.ts = binary.BigEndian.Uint64(body)
		r.val = body[8:]
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// The journal is split into shards by sensor once a gateway has more
// sensors than one fold transaction moves (maxFoldSensors): a fold then
// moves one shard's records in a transaction and deletes them, instead of
// moving some sensors' records and writing all the others back (which
// rewrote the journal up to five times over with 5,000 sensors and made
// those folds the agent's memory peak). Shard 0's keys are the plain 8-byte
// sequences of schema 2; shard s > 0 puts the byte s in front. So shard 0
// sorts first, each shard is in commit order, and a file written before
// shards is shard 0. Sequences are unique across shards.
const maxShards = 64

// journalKey appends the key of sequence seq in shard s to dst.
func journalKey(dst []byte, s byte, seq uint64) []byte {
	if s != 0 {
		dst = append(dst, s)
	}
	return binary.BigEndian.AppendUint64(dst, seq)
}

// keyShard is the shard of a journal key.
func keyShard(k []byte) byte {
	if len(k) == 9 {
		return k[0]
	}
	return 0
}

// keySeq is the sequence of a journal key.
func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// seekShard positions c at the first key of shard s (nil if it has none).
func seekShard(c *bolt.Cursor, s byte) (k, v []byte) {
	if s == 0 {
		k, v = c.First()
	} else {
		k, v = c.Seek([]byte{s})
	}
	if k != nil && keyShard(k) != s {
		return nil, nil
	}
	return k, v
}

// shardOf is the shard sensor's records go to while the journal has n
// shards (FNV-1a of the id).
func shardOf(sensor string, n int) byte {
	if n <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(sensor); i++ {
		h ^= uint32(sensor[i])
		h *= 16777619
	}
	return byte(h % uint32(n))
}

// forJournal calls fn for every record in the journal, shard by shard,
// each in commit order (so a sensor's records in commit order).
func forJournal(tx *bolt.Tx, fn func(r jrec) error) error {
	jb := tx.Bucket(bucketJournal)
	if jb == nil {
		return nil
	}
	c := jb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := forRecords(v, fn); err != nil {
			return fmt.Errorf("journal key %x: %w", k, err)
		}
	}
	return nil
}

// decodeRecord fills res from a journal record (copying everything out).
func decodeRecord(sensor string, r *jrec, res *agent.Result) error {
	if r.suppressed() {
		v := bytes.Clone(r.val)
		v[0] &^= maskSuppressed
		return decodeReading(sensor, r.ts, v, res)
	}
	return decodeReading(sensor, r.ts, r.val, res)
}

// putJournal appends rs to the journal in chunks, each sensor's to its
// shard, and records the sensors' kind and unit. It returns the number of
// raw (not suppressed) readings.
func (db *DB) putJournal(tx *bolt.Tx, rs []agent.Result) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	w := &db.w
	jb := tx.Bucket(bucketJournal)
	jb.FillPercent = 1 // pure appends
	// one shard per maxFoldSensors sensors seen; never fewer while running
	w.shards = max(w.shards, min((len(w.sensors)+maxFoldSensors-1)/maxFoldSensors, maxShards))
	if len(w.jbufs) < w.shards {
		w.jbufs = append(w.jbufs, make([][]byte, w.shards-len(w.jbufs))...)
	}
	raw := 0
	put := func(s byte) error {
		if err := db.putChunk(jb, s, w.jseq, w.jbufs[s]); err != nil {
			return err
		}
		w.jseq++
		w.jbufs[s] = w.jbufs[s][:0]
		return nil
	}
	for i := range rs {
		r := &rs[i]
		if err := db.noteSensor(tx, r); err != nil {
			return raw, err
		}
		s := shardOf(r.Sensor, w.shards)
		w.jbufs[s] = appendRecord(w.jbufs[s], r)
		if !r.Suppressed {
			raw++
		}
		if len(w.jbufs[s]) >= journalChunk {
			if err := put(s); err != nil {
				return raw, err
			}
		}
	}
	for s := range w.shards {
		if len(w.jbufs[s]) > 0 {
			if err := put(byte(s)); err != nil {
				return raw, err
			}
		}
	}
	return raw, nil
}

// putChunk puts a copy of chunk under sequence seq of shard s. bbolt keeps
// Put's slices until the commit, so key and copy come from the arena.
func (db *DB) putChunk(jb *bolt.Bucket, s byte, seq uint64, chunk []byte) error {
	key := journalKey(db.w.arena.alloc(9)[:0], s, seq)
	v := db.w.arena.alloc(len(chunk))
	copy(v, chunk)
	if err := jb.Put(key, v); err != nil {
		return fmt.Errorf("journal: put %x: %w", key, err)
	}
	return nil
}

// loadJournal sets the writer's journal cursor and count from the file.
func (db *DB) loadJournal() error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		jb := tx.Bucket(bucketJournal)
		if jb == nil {
			return fmt.Errorf("journal: %w", errNoBucket)
		}
		c := jb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) == 8 || len(k) == 9 {
				db.w.jseq = max(db.w.jseq, keySeq(k)+1)
			}
		}
		// as many shards as the sensors known so far need (putJournal)
		known := tx.Bucket(bucketSensors).Stats().KeyN
		db.w.shards = max(1, min((known+maxFoldSensors-1)/maxFoldSensors, maxShards))
		n := 0
		err := forJournal(tx, func(jrec) error { n++; return nil })
		db.w.jCount = n
		if n > 0 {
			db.w.jFirst = time.Now()
		}
		db.m.journalReadings.Set(float64(n))
		return err
	})
}

// foldAt is the journal size (readings) that makes a fold due.
func (db *DB) foldAt() int {
	if db.opts.FoldReadings > 0 {
		return db.opts.FoldReadings
	}
	return min(max(128*len(db.w.counts), 20_000), foldMax)
}

// minFoldSensors is the fewest sensors a fold moves; maxFoldSensors the
// most, which bounds the fold's memory (bbolt holds every dirty page and
// node of a transaction in memory until it commits: ~12 KiB per sensor).
const (
	minFoldSensors = 16
	maxFoldSensors = 1024
)

// foldSensors is the most sensors one fold moves: a fold rewrites about two
// pages (raw and rollup leaf) per sensor, plus branches, and those must fit
// in the room under the byte budget: at most the fixed reserve (20% of
// MaxBytes), at most half of what is not in use now.
func (db *DB) foldSensors() int {
	per := float64(3 * db.bolt.Info().PageSize)
	room := (1 - trimHigh) * float64(db.opts.MaxBytes)
	if avail := float64(db.opts.MaxBytes-db.w.inUse) / 2; avail < room {
		room = avail
	}
	return max(minFoldSensors, int(room/per))
}

// foldDue reports whether the journal should be folded now.
func (db *DB) foldDue(now time.Time) bool {
	w := &db.w
	if w.jCount == 0 || now.Before(w.nextFold) {
		return false
	}
	return w.jCount >= db.foldAt() || now.Sub(w.jFirst) >= db.opts.FoldInterval
}

// fold folds every shard of the journal, one transaction each.
func (db *DB) fold() {
	db.setFolding(true)
	defer db.setFolding(false)
	for _, s := range db.journalShards() {
		if !db.foldShard(s) {
			return
		}
	}
}

// journalShards lists the shards that hold records.
func (db *DB) journalShards() []byte {
	var out []byte
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJournal).Cursor()
		for k, _ := c.First(); k != nil; {
			s := keyShard(k)
			out = append(out, s)
			if s == 255 {
				break
			}
			k, _ = c.Seek([]byte{s + 1})
		}
		return nil
	})
	return out
}

// foldShard moves the oldest records of shard s (at most foldMax) into the
// per-sensor raw and rollup buckets and deletes their journal keys, in one
// transaction. A failure leaves the journal as it was; it returns false.
func (db *DB) foldShard(s byte) bool {
	w := &db.w
	start := time.Now()
	var moved, recs int
	var partial bool
	limit := db.foldSensors()
	var err error
	for attempt := 0; ; attempt++ {
		err = db.bolt.Update(func(tx *bolt.Tx) error {
			return db.foldTx(tx, s, limit, &moved, &recs, &partial)
		})
		if err == nil || !errors.Is(err, berrors.ErrMaxSizeReached) || attempt == maxSizeRetries || limit <= minFoldSensors {
			break
		}
		// no room for this many sensors' pages: trim, then fold fewer
		w.forget()
		clear(w.roll)
		db.m.sizeRetries.Inc()
		db.log.Debug("storage journal fold at the size limit: retrying with fewer sensors", "sensors", limit)
		limit = max(limit/2, minFoldSensors)
		for range maxSizeTrimSteps / 4 {
			if db.retentionStep(true) == 0 {
				break
			}
		}
	}
	db.folded(err, start, moved, recs, partial)
	db.releaseMapped(true) // a fold reads many sensors' pages
	return err == nil
}

func (db *DB) setFolding(on bool) {
	db.mu.Lock()
	db.folding = on
	db.mu.Unlock()
	if on {
		db.space.Broadcast() // a producer blocked at MaxBatch may go on
	}
}

// foldTx is one fold transaction: shard s, at most limit sensors.
func (db *DB) foldTx(tx *bolt.Tx, s byte, limit int, moved, recs *int, partial *bool) error {
	w := &db.w
	*moved, *recs, *partial = 0, 0, false
	jb := tx.Bucket(bucketJournal)
	jb.FillPercent = 1
	most := max(foldMax>>w.foldShrink, 1)
	journal := make([]jref, 0, min(w.jCount, most)+journalChunk/16) // journal order
	c := jb.Cursor()
	keys := 0
	var firstSeq uint64
	for k, v := seekShard(c, s); k != nil && keyShard(k) == s && len(journal) < most; k, v = c.Next() {
		if keys == 0 {
			firstSeq = keySeq(k)
		}
		err := forRecords(v, func(r jrec) error { journal = append(journal, r.ref()); return nil })
		if err != nil {
			return fmt.Errorf("journal key %x: %w", k, err)
		}
		keys++
	}
	// group by sensor, keeping journal order within a sensor: a counting
	// sort by sensor (names sorted once each), not a comparison sort of
	// every record, which was a third of the fold's CPU
	groups, grp := groupBySensor(journal, w.groupOf)
	var chosen map[string]struct{} // nil: every sensor
	if limit = min(limit, maxFoldSensors); len(groups) > limit {
		from, _ := slices.BinarySearchFunc(groups, w.foldFrom, func(g sensorGroup, name string) int {
			return bytes.Compare(g.name, []byte(name))
		})
		groups = append(groups[from:], groups[:from]...)[:limit]
		chosen = make(map[string]struct{}, limit)
		for _, g := range groups {
			chosen[string(g.name)] = struct{}{}
		}
		w.foldFrom = string(groups[len(groups)-1].name) + "\x00"
	}
	// Copy each record's time and value, group after group, into one
	// buffer: the journal is read in order and each group is then read
	// sequentially, instead of one random access per record into the mapped
	// journal (0.2 µs a reading at 200k readings/s). The sensor ids stay
	// behind, so the copy is about 60% of the journal.
	total := 0
	for _, g := range groups {
		total += g.bytes
	}
	recBuf := make([]byte, total)
	at := make([]int, len(groups)) // group -> where its next record goes
	var chosenAt []int32           // a partial fold: record -> index in groups, -1 if not folded
	if chosen != nil {
		byName := make(map[string]int32, len(groups))
		for k, g := range groups {
			byName[string(g.name)] = int32(k)
		}
		chosenAt = make([]int32, len(journal))
		for i := range journal {
			k, ok := byName[string(journal[i].sensor())]
			chosenAt[i] = k
			if !ok {
				chosenAt[i] = -1
			}
		}
	}
	off := 0
	for k := range groups {
		at[k] = off
		groups[k].recs = recBuf[off : off+groups[k].bytes : off+groups[k].bytes]
		off += groups[k].bytes
	}
	for i := range journal {
		k := grp[i]
		if chosenAt != nil {
			if k = chosenAt[i]; k < 0 {
				continue
			}
		}
		at[k] += copy(recBuf[at[k]:], journal[i].tail())
	}
	rb := tx.Bucket(bucketReadings)
	clear(w.roll)
	for _, g := range groups {
		*recs += g.n
		name := string(g.name)
		var a *rollupAgg // the rollup of the minute of the last record
		var aMinute uint64
		rs := w.runs[:0]
		for p := g.recs; len(p) > 0; {
			ts, val, rest, err := nextTimedValue(p)
			if err != nil {
				return fmt.Errorf("journal: sensor %q: %w", name, err)
			}
			p = rest
			if minute := ts - ts%uint64(time.Minute); a == nil || minute != aMinute {
				rk := rollKey{name, minute}
				if a = w.roll[rk]; a == nil {
					a = &rollupAgg{}
					w.roll[rk] = a
				}
				aMinute = minute
			}
			a.add(readF64(val[3:11]), ts)
			if val[0]&maskSuppressed == 0 {
				rs = append(rs, runReading{ts, val})
			}
		}
		w.runs = rs[:0]
		if len(rs) == 0 {
			continue
		}
		b, err := db.sensorBucket(rb, name)
		if err != nil {
			return err
		}
		if err := appendReadings(b, &w.arena, rs); err != nil {
			return fmt.Errorf("sensor %q: put readings: %w", name, err)
		}
		w.counts[name] += len(rs)
		*moved += len(rs)
	}
	if err := db.putRollups(tx); err != nil {
		return err
	}
	if err := deleteShardKeys(jb, s, keys); err != nil {
		return fmt.Errorf("journal: delete folded: %w", err)
	}
	if chosen == nil {
		return nil
	}
	*partial = true
	// the records of the sensors not folded go back, in journal order,
	// under the first keys just deleted: they fit, and they stay
	// before every newer key
	seq, buf := firstSeq, make([]byte, 0, 2*journalChunk)
	put := func() error {
		if err := db.putChunk(jb, s, seq, buf); err != nil {
			return err
		}
		seq++
		buf = buf[:0]
		return nil
	}
	for i := range journal {
		if _, ok := chosen[string(journal[i].sensor())]; ok {
			continue
		}
		buf = append(buf, journal[i].rec...)
		if len(buf) >= journalChunk {
			if err := put(); err != nil {
				return err
			}
		}
	}
	if len(buf) > 0 {
		return put()
	}
	return nil
}

// deleteShardKeys deletes the first n keys of shard s.
func deleteShardKeys(jb *bolt.Bucket, s byte, n int) error {
	c := jb.Cursor()
	k, _ := seekShard(c, s)
	for ; k != nil && n > 0; n-- {
		key := bytes.Clone(k)
		if err := c.Delete(); err != nil {
			return fmt.Errorf("delete %x: %w", key, err)
		}
		if k, _ = c.Seek(key); k != nil && keyShard(k) != s {
			break
		}
	}
	return nil
}

// sensorGroup is one sensor's records in a fold.
type sensorGroup struct {
	name  []byte
	n     int    // records
	bytes int    // the size of their times and values
	recs  []byte // their times and values in journal order (jref.tail), copied (foldTx)
}

// groupBySensor returns the fold's sensors in name order and, for every
// journal record, the index of its sensor's group. groupOf is scratch
// space, emptied on return.
func groupBySensor(journal []jref, groupOf map[string]int32) (groups []sensorGroup, grp []int32) {
	defer clear(groupOf)
	grp = make([]int32, len(journal)) // first in first-seen order, then by name
	for i := range journal {
		s := journal[i].sensor()
		g, ok := groupOf[string(s)]
		if !ok {
			g = int32(len(groups))
			groupOf[string(s)] = g
			groups = append(groups, sensorGroup{name: s})
		}
		grp[i] = g
		groups[g].n++
		groups[g].bytes += len(journal[i].tail())
	}
	order := make([]int32, len(groups))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(groups[a].name, groups[b].name) })
	rank := make([]int32, len(groups))
	sorted := make([]sensorGroup, len(groups))
	for r, g := range order {
		rank[g] = int32(r)
		sorted[r] = groups[g]
	}
	for i, g := range grp {
		grp[i] = rank[g]
	}
	return sorted, grp
}

// folded records the end of a fold.
func (db *DB) folded(err error, start time.Time, moved, recs int, partial bool) {
	w := &db.w
	if err != nil {
		w.forget()
		clear(w.roll)
		w.nextFold = time.Now().Add(retryEvery)
		// the next try moves half as much: a fold needs new pages for
		// everything it moves before the journal's pages are free, and
		// a full disk may have room for only a part
		w.foldShrink = min(w.foldShrink+1, maxFoldShrink)
		db.m.commitFailures.Inc()
		ferr := fmt.Errorf("storage %s: fold journal: %w: %w", db.path, agent.ErrStorageFailed, err)
		db.readyErr.Store(&ferr)
		db.log.Warn("storage journal fold failed", "err", err, "journal", w.jCount)
		if errors.Is(err, berrors.ErrMaxSizeReached) {
			for range maxSizeTrimSteps {
				if db.retentionStep(true) == 0 {
					break
				}
			}
		}
		return
	}
	w.jCount -= recs
	if w.jCount <= 0 {
		w.jCount, w.jFirst = 0, time.Time{}
	} else if !partial {
		w.jFirst = time.Now() // what is left is younger than this
	} // else: a partial fold left older records; the next fold is due as well
	w.nextFold = time.Time{}
	w.foldShrink = max(w.foldShrink-1, 0)
	db.readyErr.Store(nil)
	db.m.commits.Inc()
	db.m.folds.Inc()
	db.m.commitDuration.Observe(time.Since(start).Seconds())
	db.m.journalReadings.Set(float64(w.jCount))
	db.countPages()
	db.updateFileSize()
	db.log.Debug("storage folded the journal", "readings", recs, "raw", moved, "partial", partial, "took", time.Since(start))
}
