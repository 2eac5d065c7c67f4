package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// timeRange returns the unix-nano bounds of [from, to): a zero from is the
// beginning, a zero to has no end (math.MaxUint64).
func timeRange(from, to time.Time) (lo, hi uint64) {
	lo, hi = tsNano(from), math.MaxUint64
	if !to.IsZero() {
		hi = tsNano(to)
	}
	return lo, hi
}

func sensorInfo(tx *bolt.Tx, sensor string) (kind, unit string) {
	v := tx.Bucket(bucketSensors).Get([]byte(sensor))
	kind, unit, _ = strings.Cut(string(v), "\x00")
	return kind, unit
}

// Results returns the stored results of sensor with from <= Time < to
// (zero from: from the first; zero to: to the last), oldest first or, with
// desc, newest first, at most limit of them (limit <= 0: all). An unknown
// sensor returns no results and no error. Readings still in the journal are
// merged in: at equal times, older commits come first, as after the fold.
func (db *DB) Results(sensor string, from, to time.Time, limit int, desc bool) ([]agent.Result, error) {
	loTs, hiTs := timeRange(from, to)
	var out []agent.Result
	err := db.bolt.View(func(tx *bolt.Tx) error {
		kind, unit := sensorInfo(tx, sensor)
		// the journal tail of this sensor, oldest first
		var tail []agent.Result
		name := []byte(sensor)
		err := forJournal(tx, func(r jrec) error {
			if r.ts < loTs || r.ts >= hiTs || r.suppressed() || !bytes.Equal(r.sensor, name) {
				return nil
			}
			var res agent.Result
			if err := decodeRecord(sensor, &r, &res); err != nil {
				return err
			}
			res.Kind, res.Unit = kind, unit
			tail = append(tail, res)
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortStableFunc(tail, func(a, b agent.Result) int { return a.Time.Compare(b.Time) })
		if desc {
			slices.Reverse(tail)
		}
		full := func() bool { return limit > 0 && len(out) >= limit }
		if b := tx.Bucket(bucketReadings).Bucket(name); b != nil {
			w := newStoredWalk(b.Cursor(), loTs, hiTs, desc)
			for !full() {
				ts, val, ok, err := w.next()
				if err != nil {
					return fmt.Errorf("sensor %q: %w", sensor, err)
				}
				if !ok {
					break
				}
				// the journal's readings were committed later: at equal
				// times the stored one comes first, or last with desc
				for len(tail) > 0 && !full() {
					tts := tsNano(tail[0].Time)
					if (!desc && tts >= ts) || (desc && tts < ts) {
						break
					}
					out, tail = append(out, tail[0]), tail[1:]
				}
				if full() {
					break
				}
				var r agent.Result
				if err := decodeReading(sensor, ts, val, &r); err != nil {
					return err
				}
				r.Kind, r.Unit = kind, unit
				out = append(out, r)
			}
		}
		for len(tail) > 0 && !full() {
			out = append(out, tail[0])
			tail = tail[1:]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: readings of %q: %w", db.path, sensor, err)
	}
	return out, nil
}

// storedWalk yields a sensor's stored readings with lo <= time < hi, in
// time order or, with desc, newest first. An entry that starts before lo
// may hold readings after it, so the walk starts one entry early.
type storedWalk struct {
	c       *bolt.Cursor
	lo, hi  uint64
	desc    bool
	k, v    []byte       // the next entry to expand
	pending []runReading // readings of the current entry still to yield
	buf     []runReading
}

func newStoredWalk(c *bolt.Cursor, lo, hi uint64, desc bool) *storedWalk {
	w := &storedWalk{c: c, lo: lo, hi: hi, desc: desc}
	if desc {
		var end [readingKeyLen]byte
		if hi == math.MaxUint64 {
			w.k, w.v = c.Last()
		} else if k, _ := c.Seek(readingKey(end[:0], hi, 0)); k == nil {
			w.k, w.v = c.Last()
		} else {
			w.k, w.v = c.Prev()
		}
		return w
	}
	var start [readingKeyLen]byte
	readingKey(start[:0], lo, 0)
	k, v := c.Seek(start[:])
	if k == nil || binary.BigEndian.Uint64(k) > lo {
		var pk, pv []byte
		if k == nil {
			pk, pv = c.Last()
		} else {
			pk, pv = c.Prev()
		}
		if pk != nil {
			k, v = pk, pv
		} else {
			k, v = c.Seek(start[:]) // k was the first entry
		}
	}
	w.k, w.v = k, v
	return w
}

// next returns the next reading; val is valid only inside the transaction.
func (w *storedWalk) next() (ts uint64, val []byte, ok bool, err error) {
	for len(w.pending) == 0 {
		if w.k == nil {
			return 0, nil, false, nil
		}
		start := binary.BigEndian.Uint64(w.k)
		if !w.desc && start >= w.hi {
			w.k = nil
			return 0, nil, false, nil
		}
		w.buf = w.buf[:0]
		err := forEntry(w.k, w.v, func(ts uint64, val []byte) error {
			if ts >= w.lo && ts < w.hi {
				w.buf = append(w.buf, runReading{ts, val})
			}
			return nil
		})
		if err != nil {
			return 0, nil, false, err
		}
		if w.desc {
			slices.Reverse(w.buf)
			if w.k, w.v = w.c.Prev(); start < w.lo {
				w.k = nil // every earlier entry ends before this one starts
			}
		} else {
			w.k, w.v = w.c.Next()
		}
		w.pending = w.buf
	}
	r := w.pending[0]
	w.pending = w.pending[1:]
	return r.ts, r.val, true, nil
}

// Readings is Results without the detector fields.
func (db *DB) Readings(sensor string, from, to time.Time, limit int, desc bool) ([]agent.Reading, error) {
	rs, err := db.Results(sensor, from, to, limit, desc)
	if err != nil {
		return nil, err
	}
	out := make([]agent.Reading, len(rs))
	for i := range rs {
		out[i] = rs[i].Reading
	}
	return out, nil
}

// Rollups returns the 1-minute rollups of sensor whose minute starts in
// [from, to), oldest first, at most limit (limit <= 0: all). Readings still
// in the journal are included.
func (db *DB) Rollups(sensor string, from, to time.Time, limit int) ([]Rollup, error) {
	loTs, hiTs := timeRange(from.Truncate(time.Minute), to)
	var out []Rollup
	err := db.bolt.View(func(tx *bolt.Tx) error {
		// the journal tail of this sensor, by minute
		tail := map[uint64]*rollupAgg{}
		name := []byte(sensor)
		err := forJournal(tx, func(r jrec) error {
			if !bytes.Equal(r.sensor, name) {
				return nil
			}
			minute := r.ts - r.ts%uint64(time.Minute)
			if minute < loTs || minute >= hiTs {
				return nil
			}
			a := tail[minute]
			if a == nil {
				a = &rollupAgg{}
				tail[minute] = a
			}
			a.add(r.value(), r.ts)
			return nil
		})
		if err != nil {
			return err
		}
		minutes := slices.Sorted(maps.Keys(tail))
		full := func() bool { return limit > 0 && len(out) >= limit }
		emit := func(minute uint64, a rollupAgg) {
			r := Rollup{Start: time.Unix(0, int64(minute)), Count: int(a.count), Min: a.min, Max: a.max, Last: a.last}
			if a.count > 0 {
				r.Mean = a.sum / float64(a.count)
			}
			out = append(out, r)
		}
		if b := tx.Bucket(bucketRollups).Bucket(name); b != nil {
			c := b.Cursor()
			for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, loTs)); k != nil && binary.BigEndian.Uint64(k) < hiTs && !full(); {
				a, err := decodeRollup(v)
				if err != nil || len(k) != 8 {
					return fmt.Errorf("rollup %x: %w", k, errCorrupt)
				}
				minute := binary.BigEndian.Uint64(k)
				if len(minutes) > 0 && minutes[0] < minute {
					emit(minutes[0], *tail[minutes[0]])
					minutes = minutes[1:]
					continue
				}
				if len(minutes) > 0 && minutes[0] == minute {
					a.merge(*tail[minute])
					minutes = minutes[1:]
				}
				emit(minute, a)
				k, v = c.Next()
			}
		}
		for len(minutes) > 0 && !full() {
			emit(minutes[0], *tail[minutes[0]])
			minutes = minutes[1:]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: rollups of %q: %w", db.path, sensor, err)
	}
	return out, nil
}

// Latest returns the newest stored raw reading of every sensor, including
// readings still in the journal.
func (db *DB) Latest() (map[string]agent.Reading, error) {
	out := map[string]agent.Reading{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		newest := map[string]uint64{}
		err := tx.Bucket(bucketReadings).ForEach(func(name, v []byte) error {
			if v != nil {
				return nil
			}
			s := string(name)
			k, v := tx.Bucket(bucketReadings).Bucket(name).Cursor().Last()
			if k == nil {
				return nil
			}
			var ts uint64
			var val []byte
			if err := forEntry(k, v, func(t uint64, v []byte) error { ts, val = t, v; return nil }); err != nil {
				return fmt.Errorf("sensor %q: %w", s, err)
			}
			var r agent.Result
			if err := decodeReading(s, ts, val, &r); err != nil {
				return err
			}
			out[s] = r.Reading
			newest[s] = ts
			return nil
		})
		if err != nil {
			return err
		}
		err = forJournal(tx, func(r jrec) error {
			if r.suppressed() {
				return nil
			}
			if ts, ok := newest[string(r.sensor)]; ok && r.ts < ts {
				return nil
			}
			s := string(r.sensor)
			var res agent.Result
			if err := decodeRecord(s, &r, &res); err != nil {
				return err
			}
			out[s] = res.Reading
			newest[s] = r.ts
			return nil
		})
		if err != nil {
			return err
		}
		for s, r := range out {
			r.Kind, r.Unit = sensorInfo(tx, s)
			out[s] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: latest: %w", db.path, err)
	}
	return out, nil
}

// AlertQuery selects alerts. Empty fields match everything.
type AlertQuery struct {
	Sensor string
	State  string    // "firing", "resolved", ...: the latest state of the incident
	Since  time.Time // incidents that started at or after Since
	Limit  int       // <= 0 means 100; at most 1000
	Cursor string    // from a previous call: continue after its last alert
}

// Alerts returns incidents (the latest transition of each alert ID), newest
// start first, and a cursor for the next page ("" when there is none).
func (db *DB) Alerts(q AlertQuery) ([]agent.Alert, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var after []byte
	if q.Cursor != "" {
		var err error
		if after, err = hex.DecodeString(q.Cursor); err != nil || len(after) < 8 {
			return nil, "", fmt.Errorf("storage: alert cursor %q: %w", q.Cursor, agent.ErrNotFound)
		}
	}
	since := tsKey(nil, q.Since)
	var out []agent.Alert
	var next string
	err := db.bolt.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAlerts).Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Last()
		} else if k, _ = c.Seek(after); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		var lastKey []byte
		for ; k != nil; k, v = c.Prev() {
			if after != nil && bytes.Compare(k, after) >= 0 {
				continue
			}
			if bytes.Compare(k[:8], since) < 0 {
				return nil
			}
			if len(out) == limit {
				next = hex.EncodeToString(lastKey)
				return nil
			}
			var a agent.Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("alert %x: %w", k, err)
			}
			if (q.Sensor != "" && a.Sensor != q.Sensor) || (q.State != "" && string(a.State) != q.State) {
				continue
			}
			out = append(out, a)
			lastKey = bytes.Clone(k)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage %s: alerts: %w", db.path, err)
	}
	return out, next, nil
}

// LoadState calls fn with every stored detector/filter snapshot. The state
// slice is a copy fn may keep. fn's error stops the walk and is returned.
func (db *DB) LoadState(fn func(sensor string, state []byte) error) error {
	type kv struct {
		k string
		v []byte
	}
	var all []kv
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).ForEach(func(k, v []byte) error {
			all = append(all, kv{string(k), bytes.Clone(v)})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("storage %s: load state: %w", db.path, err)
	}
	for _, e := range all {
		if err := fn(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}
