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

// tail is the record's 8-byte time and value.
func (r *jrec) tail() []byte { return r.rec[len(r.rec)-len(r.val)-8:] }

// nextTimedValue splits the first time and value (a jrec.tail) off p.
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
		r, rest, err := nextRecord(v)
		if err != nil {
			return err
		}
		v = rest
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// nextRecord splits the first record off v.
func nextRecord(v []byte) (r jrec, rest []byte, err error) {
	n, w := binary.Uvarint(v)
	if w <= 0 || uint64(len(v)-w) < n {
		return jrec{}, nil, fmt.Errorf("journal record: %w", errCorrupt)
	}
	rec, body := v[:w+int(n)], v[w:w+int(n)]
	sl, w := binary.Uvarint(body)
	if w <= 0 || uint64(len(body)-w) < sl+8+11 {
		return jrec{}, nil, fmt.Errorf("journal record: %w", errCorrupt)
	}
	r = jrec{rec: rec, sensor: body[w : w+int(sl)]}
	body = body[w+int(sl):]
	r.ts = binary.BigEndian.Uint64(body)
	r.val = body[8:]
	return r, v[len(rec):], nil
}

// A batch entry is a reading as the writer takes it from Write: the
// sensor's info as the sensors bucket stores it (kind, a zero byte, unit)
// with a uvarint length in front, then the reading's journal record. A
// batch holds entries, not agent.Results: half the bytes and no
// pointers, and at max rate up to two batches of 20,000 wait for the
// writer, the biggest thing in the Go heap.
func appendEntry(dst []byte, r *agent.Result) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(r.Kind)+1+len(r.Unit)))
	dst = append(dst, r.Kind...)
	dst = append(dst, 0)
	dst = append(dst, r.Unit...)
	return appendRecord(dst, r)
}

// nextEntry splits the first entry off p.
func nextEntry(p []byte) (info []byte, r jrec, rest []byte, err error) {
	n, w := binary.Uvarint(p)
	if w <= 0 || uint64(len(p)-w) < n {
		return nil, jrec{}, nil, fmt.Errorf("batch entry: %w", errCorrupt)
	}
	info = p[w : w+int(n)]
	r, rest, err = nextRecord(p[w+int(n):])
	return info, r, rest, err
}

// The journal is split into shards by sensor once a gateway has more than
// shardSensors sensors, and a fold moves one shard: a fold of 200,000
// records over 5,000 sensors would move 40 readings a sensor, and the
// bucket pages it rewrites would be amortised over a third as many
// readings as at 1,000 sensors. Shard 0's keys are the plain 8-byte
// sequences of schema 2; shard s > 0 puts the byte s in front. So shard 0
// sorts first, each shard is in commit order, and a file written before
// shards is shard 0. Sequences are unique across shards.
const (
	shardSensors = 1024
	maxShards    = 64
)

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
func shardOf[S string | []byte](sensor S, n int) byte {
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

// forJournal calls fn for every record in the journal that is not folded
// yet (foldMark), shard by shard, each in commit order (so a sensor's
// records in commit order).
func forJournal(tx *bolt.Tx, fn func(r jrec) error) error {
	jb := tx.Bucket(bucketJournal)
	if jb == nil {
		return nil
	}
	mark, marked := readFoldMark(tx)
	c := jb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		each := fn
		if marked && mark.covers(k) {
			each = func(r jrec) error {
				if mark.moved(r.sensor) {
					return nil
				}
				return fn(r)
			}
		}
		if err := forRecords(v, each); err != nil {
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

// putJournal appends the batch entries es to the journal in chunks, each
// sensor's to its shard, and records the sensors' kind and unit. It returns
// the number of raw (not suppressed) readings.
func (db *DB) putJournal(tx *bolt.Tx, es []byte) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	w := &db.w
	jb := tx.Bucket(bucketJournal)
	jb.FillPercent = 1 // pure appends
	// one shard per shardSensors sensors seen; never fewer while running
	w.shards = max(w.shards, min((len(w.sensors)+shardSensors-1)/shardSensors, maxShards))
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
	for len(es) > 0 {
		info, r, rest, err := nextEntry(es)
		if err != nil {
			return raw, err
		}
		es = rest
		if err := db.noteSensor(tx, r.sensor, info); err != nil {
			return raw, err
		}
		s := shardOf(r.sensor, w.shards)
		w.jbufs[s] = append(w.jbufs[s], r.rec...)
		if !r.suppressed() {
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
		db.w.shards = max(1, min((known+shardSensors-1)/shardSensors, maxShards))
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
	return min(max(128*len(db.w.sensors), 20_000), foldMax)
}

// minFoldSensors is the fewest sensors a fold part moves.
const minFoldSensors = 16

// foldSensors is the most sensors one fold part moves: a part rewrites about two
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

// fold folds every shard of the journal, each in transactions of its own;
// with between, due batches commit between them (commitBetween). A Flush
// folds without: its loop folds until the journal is empty, which new
// commits could put off for as long as the load lasts.
func (db *DB) fold(between bool) {
	db.setFolding(true)
	defer db.setFolding(false)
	for _, s := range db.journalShards() {
		if !db.foldShard(s, between) {
			return
		}
	}
}

// journalShards lists the shards that hold records, the shard of a fold cut
// short (its mark) first: the last part of any other shard's fold would
// replace or delete that mark, and readers would see the marked shard's
// moved records twice.
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
		if mark, ok := readFoldMark(tx); ok {
			if i := slices.Index(out, mark.shard); i > 0 {
				out = slices.Insert(slices.Delete(out, i, i+1), 0, mark.shard)
			}
		}
		return nil
	})
	return out
}

func (db *DB) setFolding(on bool) {
	db.mu.Lock()
	db.folding = on
	db.mu.Unlock()
	if on {
		db.space.Broadcast() // a producer blocked at MaxBatch may go on
	}
}

// A shard's fold commits in parts of at most partSensors sensors each (in
// name order), one transaction a part: bbolt holds a transaction's dirty
// pages and nodes in memory until it commits (~12 KiB a sensor), and its
// commit maps every touched sensor's pages (the kernel maps 16 cached pages
// around each fault), so the fold's size in sensors is the agent's memory
// peak. More, smaller journal shards bounded it too, but a small commit
// then dirtied a leaf per shard: twice the bytes written per reading at
// QoS 1. The journal keeps the fold's records until every part is
// committed, and then deletes their keys (deleteFolded); until the last is
// deleted, the meta key "fold" (foldMark) says which records are already in
// the per-sensor buckets, and forJournal skips those, so every reader sees
// each reading once, and a fold cut short by a crash resumes where it
// stopped. At 1,000 sensors and max rate, parts of 128 instead of 256
// sensors lowered the peak RSS from a median 63.4 to 57.9 MB (4 rounds),
// with the same CPU and bytes written per reading.
const partSensors = 128

// deleteKeys bounds the folded journal keys one transaction deletes
// (writerState.delKeys; tests lower it); the keys left wait under a mark
// with an empty from. Deleting reads each key's page and the commit reads
// them again to free them, each read mapping up to 16 cached pages around
// it: deleting a max-rate fold's ~10,000 keys in one transaction mapped
// ~50 MB of the file, the agent's RSS peak. 1024 rather than 2048: peak RSS
// at max rate 2 MB lower (median of 8 pairs), CPU and bytes written per
// reading unchanged; BenchmarkFold alone about 6% slower.
const deleteKeys = 1024

// dropKeys is how many journal keys a fold's gather walks between drops of
// the file mapping (dropMapped): its walks over a max-rate fold's ~10,000
// keys otherwise mapped 36–48 MB of the file by the same fault-around.
const dropKeys = 512

// foldMark is the state of a fold cut into parts: of shard's journal keys
// up to sequence last, the records of sensors before from are folded.
type foldMark struct {
	shard byte
	last  uint64
	from  []byte
}

var keyFold = []byte("fold")

func (m foldMark) encode() []byte {
	b := append(make([]byte, 0, 9+len(m.from)), m.shard)
	return append(binary.BigEndian.AppendUint64(b, m.last), m.from...)
}

// readFoldMark returns the fold mark of tx, if a fold is cut into parts.
func readFoldMark(tx *bolt.Tx) (foldMark, bool) {
	v := tx.Bucket(bucketMeta).Get(keyFold)
	if len(v) < 9 {
		return foldMark{}, false
	}
	return foldMark{shard: v[0], last: binary.BigEndian.Uint64(v[1:9]), from: v[9:]}, true
}

// covers reports whether journal key k is one of the marked fold's.
func (m *foldMark) covers(k []byte) bool { return keyShard(k) == m.shard && keySeq(k) <= m.last }

// moved reports whether, in the keys it covers, sensor's records are
// already in their buckets. An empty from marks a fold whose records are
// all moved and whose keys are being deleted (deleteKeys).
func (m *foldMark) moved(sensor []byte) bool {
	return len(m.from) == 0 || bytes.Compare(sensor, m.from) < 0
}

// foldSet is what one fold of a shard moves: the shard's first keys, their
// records grouped by sensor in name order, copied out of the file (the
// parts are separate transactions).
type foldSet struct {
	shard  byte
	keys   int    // journal keys, the shard's first (less those deleted so far)
	last   uint64 // the sequence of the last of them
	groups []sensorGroup
	free   func() // frees the groups' record copies (offHeap)
}

// foldShard moves the oldest records of shard s (at most foldMax) into the
// per-sensor raw and rollup buckets, part after part, and then deletes
// their journal keys, deleteKeys a transaction. A failed transaction leaves
// the journal and the ones before it as they were (the mark says where to
// resume); it returns false.
func (db *DB) foldShard(s byte, between bool) bool {
	start := time.Now()
	var set foldSet
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		set, err = db.gatherFold(tx, s)
		return err
	})
	if set.free != nil {
		defer func() {
			// nothing the collector scans may point into the copies once
			// they are unmapped (the heap may map that range next): the
			// runs scratch does
			clear(db.w.runs[:cap(db.w.runs)])
			set.free()
		}()
	}
	moved, recs := 0, 0
	limit := min(db.foldSensors(), db.w.part)
	for from := 0; err == nil && set.keys > 0; {
		// parts of sensors, then parts that delete the journal keys
		n := min(limit, len(set.groups)-from)
		var m, r, deleted int
		err = db.bolt.Update(func(tx *bolt.Tx) (err error) {
			if n > 0 {
				m, r, err = db.foldPart(tx, &set, from, n)
			} else {
				deleted, err = db.deleteFolded(tx, &set)
			}
			return err
		})
		db.releaseMapped(true) // a part reads many sensors' pages
		if errors.Is(err, berrors.ErrMaxSizeReached) && limit > minFoldSensors {
			// no room for this many sensors' pages: trim, then fold fewer
			db.w.forget()
			db.m.sizeRetries.Inc()
			db.log.Debug("storage journal fold at the size limit: retrying with fewer sensors", "sensors", n)
			limit = max(n/2, minFoldSensors)
			for range maxSizeTrimSteps / 4 {
				if db.retentionStep(true) == 0 {
					break
				}
			}
			err = nil
			continue
		}
		if err == nil {
			moved, recs = moved+m, recs+r
			db.m.commits.Inc()
			from += n
			set.keys -= deleted
			if between {
				db.commitBetween()
			}
		}
	}
	db.folded(err, start, moved, recs)
	return err == nil
}

// gatherFold reads the records of the fold of shard s: the rest of a fold
// cut short if the mark says so, or else the shard's oldest records, at
// most foldMax>>foldShrink of them (whole keys). It walks them twice, to
// group them by sensor and then to copy them, instead of keeping a
// reference per record (6 MB at 200,000 records, live through the fold).
func (db *DB) gatherFold(tx *bolt.Tx, s byte) (foldSet, error) {
	w := &db.w
	set := foldSet{shard: s}
	mark, resume := readFoldMark(tx)
	resume = resume && mark.shard == s
	most := max(foldMax>>w.foldShrink, 1)
	// walk calls fn for each record of the shard's first keys, in journal
	// order, while more(k, records so far, keys so far) holds for the next
	// key; it returns the number of keys it walked and the last one's
	// sequence
	walk := func(more func(k []byte, recs, keys int) bool, fn func(r jrec)) (keys int, last uint64, err error) {
		c, recs := tx.Bucket(bucketJournal).Cursor(), 0
		for k, v := seekShard(c, s); k != nil && keyShard(k) == s && more(k, recs, keys); k, v = c.Next() {
			err := forRecords(v, func(r jrec) error {
				if !resume || !mark.moved(r.sensor) {
					fn(r)
					recs++
				}
				return nil
			})
			if err != nil {
				return keys, last, fmt.Errorf("journal key %x: %w", k, err)
			}
			if keys, last = keys+1, keySeq(k); keys%dropKeys == 0 {
				db.dropMapped(tx.Size()) // see dropKeys
			}
		}
		return keys, last, nil
	}
	// the rest of a fold cut short: the keys the mark covers; else whole
	// keys up to most records
	first := func(k []byte, recs, _ int) bool {
		if resume {
			return mark.covers(k)
		}
		return recs < most
	}
	// group by sensor, keeping journal order within a sensor: a counting
	// sort by sensor (names sorted once each), not a comparison sort of
	// every record, which was a third of the fold's CPU
	var groups []sensorGroup
	grp := make([]int32, 0, min(w.jCount, most)+journalChunk/16) // record -> group
	defer clear(w.groupOf)
	keys, last, err := walk(first, func(r jrec) {
		g, ok := w.groupOf[string(r.sensor)]
		if !ok {
			g = int32(len(groups))
			w.groupOf[string(r.sensor)] = g
			groups = append(groups, sensorGroup{name: r.sensor})
		}
		grp = append(grp, g)
		groups[g].n++
		groups[g].bytes += len(r.tail())
	})
	if err != nil {
		return set, err
	}
	set.keys, set.last = keys, last
	groups = sortGroups(groups, grp)
	// Copy each record's time and value, group after group, into one
	// buffer: the parts then read each group sequentially, instead of one
	// random access per record into the mapped journal (0.2 µs a reading
	// at 200k readings/s). The sensor ids stay behind, so the copy is about
	// 60% of the journal. The names are copied: the parts are transactions
	// of their own. The copies are the biggest thing live during a fold
	// (4.7 MB at 128,000 records) and hold no pointers, so they live
	// outside the Go heap, where they count once, not twice (offHeap).
	total, names := 0, 0
	for _, g := range groups {
		total += g.bytes
		names += len(g.name)
	}
	recBuf, free := offHeap(total)
	set.free = free
	nameBuf := make([]byte, 0, names)
	at := make([]int, len(groups)) // group -> where its next record goes
	off := 0
	for k := range groups {
		g := &groups[k]
		at[k] = off
		g.recs = recBuf[off : off+g.bytes : off+g.bytes]
		off += g.bytes
		nameBuf = append(nameBuf, g.name...)
		g.name = nameBuf[len(nameBuf)-len(g.name) : len(nameBuf) : len(nameBuf)]
	}
	i := 0
	same := func(_ []byte, _, keys int) bool { return keys < set.keys }
	_, _, err = walk(same, func(r jrec) {
		k := grp[i]
		at[k] += copy(recBuf[at[k]:], r.tail())
		i++
	})
	set.groups = groups
	return set, err
}

// foldPart moves the records of set's groups [from, from+n) into their
// sensors' raw and rollup buckets and marks where the next part starts, or,
// after the last group, that every record is moved.
func (db *DB) foldPart(tx *bolt.Tx, set *foldSet, from, n int) (moved, recs int, err error) {
	w := &db.w
	rb := tx.Bucket(bucketReadings)
	clear(w.roll)
	for _, g := range set.groups[from : from+n] {
		recs += g.n
		name := string(g.name)
		var a *rollupAgg // the rollup of the minute of the last record
		var aMinute uint64
		rs := w.runs[:0]
		for p := g.recs; len(p) > 0; {
			ts, val, rest, err := nextTimedValue(p)
			if err != nil {
				return 0, 0, fmt.Errorf("journal: sensor %q: %w", name, err)
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
				w.rawFloor = min(w.rawFloor, ts)
			}
		}
		w.runs = rs[:0]
		if len(rs) == 0 {
			continue
		}
		b, err := db.sensorBucket(rb, name)
		if err != nil {
			return 0, 0, err
		}
		if err := appendReadings(b, &w.arena, rs); err != nil {
			return 0, 0, fmt.Errorf("sensor %q: put readings: %w", name, err)
		}
		n, err := addReadings(b, len(rs))
		if err != nil {
			return 0, 0, fmt.Errorf("sensor %q: count readings: %w", name, err)
		}
		if most := db.opts.MaxRawPerSensor; most > 0 && n > most {
			w.overCap = true
		}
		moved += len(rs)
	}
	if err := db.putRollups(tx); err != nil {
		return 0, 0, err
	}
	mark := foldMark{shard: set.shard, last: set.last} // from empty: all moved
	if from+n < len(set.groups) {
		mark.from = set.groups[from+n].name
	}
	if err := tx.Bucket(bucketMeta).Put(keyFold, mark.encode()); err != nil {
		return 0, 0, fmt.Errorf("meta: put fold mark: %w", err)
	}
	return moved, recs, nil
}

// deleteFolded deletes up to delKeys of the set's journal keys, whose
// records are all moved, and returns how many; the one that deletes the
// last of them deletes the mark too.
func (db *DB) deleteFolded(tx *bolt.Tx, set *foldSet) (deleted int, err error) {
	want := min(set.keys, db.w.delKeys)
	if deleted, err = deleteShardKeys(tx.Bucket(bucketJournal), set.shard, want); err != nil {
		return 0, fmt.Errorf("journal: delete folded: %w", err)
	}
	if deleted < want {
		deleted = set.keys // the shard has no more keys: none is left to delete
	}
	if deleted < set.keys {
		return deleted, nil
	}
	if err := tx.Bucket(bucketMeta).Delete(keyFold); err != nil {
		return 0, fmt.Errorf("meta: delete fold mark: %w", err)
	}
	return deleted, nil
}

// deleteShardKeys deletes the first n keys of shard s (fewer if it has
// fewer) and returns how many it deleted.
func deleteShardKeys(jb *bolt.Bucket, s byte, n int) (deleted int, err error) {
	c := jb.Cursor()
	k, _ := seekShard(c, s)
	for ; k != nil && deleted < n; deleted++ {
		key := bytes.Clone(k)
		if err := c.Delete(); err != nil {
			return deleted, fmt.Errorf("delete %x: %w", key, err)
		}
		if k, _ = c.Seek(key); k != nil && keyShard(k) != s {
			k = nil // the next shard's
		}
	}
	return deleted, nil
}

// sensorGroup is one sensor's records in a fold.
type sensorGroup struct {
	name  []byte // copied out of the journal (gatherFold)
	n     int    // records
	bytes int    // the size of their times and values
	recs  []byte // their times and values in journal order (jrec.tail), copied (gatherFold)
}

// sortGroups returns groups in name order and renumbers grp (record ->
// group) to match.
func sortGroups(groups []sensorGroup, grp []int32) []sensorGroup {
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
	return sorted
}

// folded records the end of a fold that moved recs journal records (moved
// raw readings) in the parts that committed.
func (db *DB) folded(err error, start time.Time, moved, recs int) {
	w := &db.w
	if w.jCount -= recs; w.jCount <= 0 {
		w.jCount, w.jFirst = 0, time.Time{}
	}
	db.m.journalReadings.Set(float64(w.jCount))
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
	if w.jCount > 0 {
		w.jFirst = time.Now() // what is left is younger than this
	}
	w.nextFold = time.Time{}
	w.foldShrink = max(w.foldShrink-1, 0)
	db.readyErr.Store(nil)
	db.m.folds.Inc()
	db.m.commitDuration.Observe(time.Since(start).Seconds())
	db.countPages()
	db.updateFileSize()
	db.log.Debug("storage folded the journal", "readings", recs, "raw", moved, "took", time.Since(start))
}
