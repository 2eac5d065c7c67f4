package storage

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// A sensor's raw readings are stored in runs: one bbolt value holds up to
// runTarget bytes of consecutive readings, keyed by the time of its first
// reading. A fold then does one Put per ~40 readings of a sensor instead of
// one per reading, which was most of the fold's CPU and the live memory of
// its transaction (a bbolt inode and Cursor per key).
//
// Run value (schema 3):
//
//	[0]  runMarker
//	     uvarint count
//	     count times: uvarint time delta (ns, from the key's time for the
//	     first reading, then from the previous one), encodeReading bytes
//
// A value whose first byte is not runMarker is one reading (schema 2, which
// is still read): encodeReading's mask never has that bit.
//
// Invariants, kept by every writer below: a run's readings are in time
// order; the key's time is its first reading's; the time ranges of a
// sensor's entries do not overlap (a later key starts after every reading of
// the entry before it, except schema-2 single readings at one time), so a
// walk over the keys is a walk over the readings in time order.
const (
	runMarker = 0x40
	// runTarget bounds a run so that a leaf is one 4 KiB page (see
	// journalChunk): ~40 readings with detector fields.
	runTarget = 900
)

// errStop ends a forEntry walk early without an error.
var errStop = errors.New("stop")

// runReading is one reading of a run: its time and encodeReading bytes.
type runReading struct {
	ts  uint64
	val []byte
}

func cmpRunReading(a, b runReading) int { return cmp.Compare(a.ts, b.ts) }

// readingLen is the length of the encodeReading value at the start of v.
func readingLen(v []byte) (int, error) {
	if len(v) == 0 {
		return 0, errCorrupt
	}
	return valueLen(v[0], v)
}

// valueLen is readingLen with the mask given (a journal record's, without
// maskSuppressed).
func valueLen(mask byte, v []byte) (int, error) {
	if len(v) < 11 || mask&^(maskRaw|maskScore|maskBand|maskArrived) != 0 {
		return 0, errCorrupt
	}
	n := 11
	if mask&maskRaw != 0 {
		n += 8
	}
	if mask&maskScore != 0 {
		if len(v) < n+9 {
			return 0, errCorrupt
		}
		n += 9 + int(v[n+8])
	}
	if mask&maskBand != 0 {
		n += 16
	}
	if n > len(v) {
		return 0, errCorrupt
	}
	if mask&maskArrived != 0 {
		_, w := binary.Varint(v[n:])
		if w <= 0 {
			return 0, errCorrupt
		}
		n += w
	}
	return n, nil
}

// forEntry calls fn with every reading of the entry k, v in time order. An
// errStop from fn ends the walk with a nil error. val is valid only as long
// as v.
func forEntry(k, v []byte, fn func(ts uint64, val []byte) error) error {
	if len(k) != readingKeyLen || len(v) == 0 {
		return fmt.Errorf("reading key %x: %w", k, errCorrupt)
	}
	ts := binary.BigEndian.Uint64(k)
	if v[0] != runMarker {
		if err := fn(ts, v); err != nil && err != errStop {
			return err
		}
		return nil
	}
	p := v[1:]
	n, w := binary.Uvarint(p)
	if w <= 0 {
		return fmt.Errorf("run %x: count: %w", k, errCorrupt)
	}
	p = p[w:]
	for range n {
		d, w := binary.Uvarint(p)
		if w <= 0 {
			return fmt.Errorf("run %x: time: %w", k, errCorrupt)
		}
		ts += d
		l, err := readingLen(p[w:])
		if err != nil {
			return fmt.Errorf("run %x: reading: %w", k, err)
		}
		if err := fn(ts, p[w:w+l]); err != nil {
			if err == errStop {
				return nil
			}
			return err
		}
		p = p[w+l:]
	}
	if len(p) != 0 {
		return fmt.Errorf("run %x: %d bytes after the last reading: %w", k, len(p), errCorrupt)
	}
	return nil
}

// entryReadings appends the readings of the entry k, v to dst.
func entryReadings(dst []runReading, k, v []byte) ([]runReading, error) {
	err := forEntry(k, v, func(ts uint64, val []byte) error {
		dst = append(dst, runReading{ts, val})
		return nil
	})
	return dst, err
}

// entryCount is the number of readings in the entry v.
func entryCount(v []byte) int {
	if len(v) == 0 || v[0] != runMarker {
		return 1
	}
	n, w := binary.Uvarint(v[1:])
	if w <= 0 {
		return 1
	}
	return int(n)
}

// readingCount is the number of readings in a sensor's bucket, for the
// max_raw_per_sensor cap. The bucket's sequence keeps it, plus one, in the
// file: counting means reading every page of the bucket, and at every start
// that mapped 166 MB of a full 238 MB file and took 3 s (docs/storage.md).
// Zero is a bucket of schema 5 or older, counted once here. b must be
// writable.
func readingCount(b *bolt.Bucket) (int, error) {
	if s := b.Sequence(); s > 0 {
		return int(s - 1), nil
	}
	n := countReadings(b)
	return n, b.SetSequence(uint64(n) + 1)
}

// countReadings counts the readings in a sensor's bucket, page by page.
func countReadings(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n += entryCount(v)
	}
	return n
}

// addReadings adds delta (negative: deleted) to a sensor bucket's count and
// returns the new count. readingCount must have made the count known before
// the change, or the change would be counted twice.
func addReadings(b *bolt.Bucket, delta int) (int, error) {
	s := b.Sequence()
	if s == 0 {
		return 0, errors.New("reading count changed before it was known")
	}
	n := max(int(s-1)+delta, 0)
	return n, b.SetSequence(uint64(n) + 1)
}

// entryNewest is the time of the newest reading of the entry k, v.
func entryNewest(k, v []byte) (uint64, error) {
	var newest uint64
	err := forEntry(k, v, func(ts uint64, _ []byte) error { newest = ts; return nil })
	return newest, err
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// putRuns stores rs (in time order) as runs of at most about runTarget
// bytes: the first under (rs[0].ts, seq), the others under (their first
// time, 0). A run is only cut where the time increases, so that keys stay
// unique and ranges do not overlap. Keys and values come from ar: bbolt
// keeps them until the commit.
func putRuns(b *bolt.Bucket, ar *arena, seq uint16, rs []runReading) error {
	for len(rs) > 0 {
		size, n := 1, 0
		prev := rs[0].ts
		for n < len(rs) {
			add := uvarintLen(rs[n].ts-prev) + len(rs[n].val)
			if n > 0 && size+add+uvarintLen(uint64(n+1)) > runTarget && rs[n].ts > rs[n-1].ts {
				break
			}
			size += add
			prev = rs[n].ts
			n++
		}
		size += uvarintLen(uint64(n))
		run := rs[:n]
		v := ar.alloc(size)[:0]
		v = append(v, runMarker)
		v = binary.AppendUvarint(v, uint64(n))
		prev = run[0].ts
		for _, r := range run {
			v = binary.AppendUvarint(v, r.ts-prev)
			v = append(v, r.val...)
			prev = r.ts
		}
		key := readingKey(ar.alloc(readingKeyLen)[:0], run[0].ts, seq)
		if err := b.Put(key, v); err != nil {
			return fmt.Errorf("put run %x: %w", key, err)
		}
		rs, seq = rs[n:], 0
	}
	return nil
}

// replaceEntry deletes the entry under k and stores rs (in time order) in
// its place. The first run keeps k's sequence when it starts at k's time.
func replaceEntry(b *bolt.Bucket, ar *arena, k []byte, rs []runReading) error {
	key := [readingKeyLen]byte(k) // k points into the page or node Delete changes
	if err := b.Delete(key[:]); err != nil {
		return fmt.Errorf("delete %x: %w", key, err)
	}
	if len(rs) == 0 {
		return nil
	}
	var seq uint16
	if rs[0].ts == binary.BigEndian.Uint64(key[:8]) {
		seq = binary.BigEndian.Uint16(key[8:])
	}
	return putRuns(b, ar, seq, rs)
}

// mergeEntry rewrites the entry k, v with add (in time order) merged in;
// at equal times the entry's readings (committed earlier) come first.
func mergeEntry(b *bolt.Bucket, ar *arena, k, v []byte, add []runReading) error {
	old, err := entryReadings(nil, k, v)
	if err != nil {
		return err
	}
	merged := make([]runReading, 0, len(old)+len(add))
	for len(old) > 0 && len(add) > 0 {
		if add[0].ts < old[0].ts {
			merged, add = append(merged, add[0]), add[1:]
		} else {
			merged, old = append(merged, old[0]), old[1:]
		}
	}
	merged = append(append(merged, old...), add...)
	return replaceEntry(b, ar, k, merged)
}

// appendReadings stores rs, a sensor's readings in commit order, in its
// bucket b. Readings newer than everything stored go into new runs (or
// extend a short last run); older ones are merged into the entry whose time
// range they fall in.
func appendReadings(b *bolt.Bucket, ar *arena, rs []runReading) error {
	if !slices.IsSortedFunc(rs, cmpRunReading) {
		slices.SortStableFunc(rs, cmpRunReading)
	}
	lk, lv := b.Cursor().Last()
	if lk == nil {
		return putRuns(b, ar, 0, rs)
	}
	newest, err := entryNewest(lk, lv)
	if err != nil {
		return err
	}
	late, _ := slices.BinarySearchFunc(rs, newest, func(r runReading, t uint64) int {
		if r.ts <= t {
			return -1
		}
		return 1
	})
	if late > 0 {
		if err := mergeLate(b, ar, rs[:late]); err != nil {
			return err
		}
		lk, lv = b.Cursor().Last()
	}
	if rs = rs[late:]; len(rs) == 0 {
		return nil
	}
	if len(lv) < runTarget/2 {
		return mergeEntry(b, ar, lk, lv, rs)
	}
	return putRuns(b, ar, 0, rs)
}

// mergeLate merges rs (in time order, none newer than the newest stored
// reading) into the entries whose time ranges they fall in: each goes into
// the last entry that starts at or before it (the first entry for a reading
// older than all), so entries never overlap.
func mergeLate(b *bolt.Bucket, ar *arena, rs []runReading) error {
	for len(rs) > 0 {
		c := b.Cursor()
		var after [readingKeyLen]byte
		readingKey(after[:0], rs[0].ts+1, 0)
		k, v := c.Seek(after[:])
		if k == nil {
			k, v = c.Last()
		} else if pk, pv := c.Prev(); pk != nil {
			k, v = pk, pv
		}
		// the readings before the next entry's time go into this one
		n := len(rs)
		nc := b.Cursor()
		if nk, _ := nc.Seek(k); nk != nil {
			if nk, _ = nc.Next(); nk != nil {
				next := binary.BigEndian.Uint64(nk)
				n, _ = slices.BinarySearchFunc(rs, next, func(r runReading, t uint64) int {
					if r.ts < t {
						return -1
					}
					return 1
				})
			}
		}
		if n == 0 { // cannot happen while entries do not overlap
			return fmt.Errorf("late reading at %d: no entry covers it: %w", rs[0].ts, errCorrupt)
		}
		if err := mergeEntry(b, ar, k, v, rs[:n]); err != nil {
			return err
		}
		rs = rs[n:]
	}
	return nil
}

// dropOldest deletes a sensor's readings from the oldest on while
// drop(time, deleted so far) is true, at most max of them. A run partly
// deleted is rewritten with the readings that stay.
func dropOldest(b *bolt.Bucket, ar *arena, max int, drop func(ts uint64, deleted int) bool) (int, error) {
	n := 0
	c := b.Cursor()
	for k, v := c.First(); k != nil && n < max; k, v = c.First() {
		if len(k) == readingKeyLen && len(v) > 0 && v[0] != runMarker { // a schema-2 reading
			if !drop(binary.BigEndian.Uint64(k), n) {
				break
			}
			if err := c.Delete(); err != nil {
				return n, fmt.Errorf("delete %x: %w", k, err)
			}
			n++
			continue
		}
		gone := 0
		err := forEntry(k, v, func(ts uint64, _ []byte) error {
			if n+gone >= max || !drop(ts, n+gone) {
				return errStop
			}
			gone++
			return nil
		})
		if err != nil {
			return n, err
		}
		if gone == 0 {
			break
		}
		n += gone
		if gone == entryCount(v) {
			if err := c.Delete(); err != nil {
				return n, fmt.Errorf("delete %x: %w", k, err)
			}
			continue
		}
		rest, err := entryReadings(nil, k, v)
		if err != nil {
			return n, err
		}
		return n, replaceEntry(b, ar, k, rest[gone:])
	}
	return n, nil
}
