package storage

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// timeRange returns the key bounds of [from, to): a zero from is the
// beginning, a zero to has no end (nil).
func timeRange(from, to time.Time) (lo, hi []byte) {
	lo = tsKey(nil, from)
	if !to.IsZero() {
		hi = tsKey(nil, to)
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
// sensor returns no results and no error.
func (db *DB) Results(sensor string, from, to time.Time, limit int, desc bool) ([]agent.Result, error) {
	lo, hi := timeRange(from, to)
	var out []agent.Result
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReadings).Bucket([]byte(sensor))
		if b == nil {
			return nil
		}
		kind, unit := sensorInfo(tx, sensor)
		c := b.Cursor()
		var k, v []byte
		step := c.Next
		if desc {
			step = c.Prev
			if hi == nil {
				k, v = c.Last()
			} else if k, _ = c.Seek(hi); k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		} else {
			k, v = c.Seek(lo)
		}
		inRange := func(k []byte) bool {
			if desc {
				return bytes.Compare(k[:8], lo) >= 0
			}
			return hi == nil || bytes.Compare(k[:8], hi) < 0
		}
		for ; k != nil && inRange(k) && (limit <= 0 || len(out) < limit); k, v = step() {
			var r agent.Result
			if err := decodeReading(sensor, k, v, &r); err != nil {
				return err
			}
			r.Kind, r.Unit = kind, unit
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: readings of %q: %w", db.path, sensor, err)
	}
	return out, nil
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
// [from, to), oldest first, at most limit (limit <= 0: all).
func (db *DB) Rollups(sensor string, from, to time.Time, limit int) ([]Rollup, error) {
	lo, hi := timeRange(from.Truncate(time.Minute), to)
	var out []Rollup
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRollups).Bucket([]byte(sensor))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(lo); k != nil && (hi == nil || bytes.Compare(k, hi) < 0) && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			a, err := decodeRollup(v)
			if err != nil || len(k) != 8 {
				return fmt.Errorf("rollup %x: %w", k, errCorrupt)
			}
			r := Rollup{Start: keyTime(k), Count: int(a.count), Min: a.min, Max: a.max, Last: a.last}
			if a.count > 0 {
				r.Mean = a.sum / float64(a.count)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage %s: rollups of %q: %w", db.path, sensor, err)
	}
	return out, nil
}

// Latest returns the newest stored raw reading of every sensor.
func (db *DB) Latest() (map[string]agent.Reading, error) {
	out := map[string]agent.Reading{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReadings).ForEach(func(name, v []byte) error {
			if v != nil {
				return nil
			}
			s := string(name)
			k, val := tx.Bucket(bucketReadings).Bucket(name).Cursor().Last()
			if k == nil {
				return nil
			}
			var r agent.Result
			if err := decodeReading(s, k, val, &r); err != nil {
				return err
			}
			r.Kind, r.Unit = sensorInfo(tx, s)
			out[s] = r.Reading
			return nil
		})
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
