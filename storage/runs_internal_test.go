package storage

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// A file written before runs (schema 2: one value per reading, equal times
// under sequences 0, 1, ...) stays readable, and new readings, on time and
// late, go into runs around the old values without reordering anything.
func TestRuns_schema2ValuesStayReadable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	t0 := time.Now().Truncate(time.Hour).Add(-time.Hour) // within the raw retention
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// schema-2 values: seconds 0, 10, 10, 10, 20 (values 0..4)
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := []struct {
		s   int
		seq uint16
	}{{0, 0}, {10, 0}, {10, 1}, {10, 2}, {20, 0}}
	err = bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketReadings).CreateBucket([]byte("s"))
		if err != nil {
			return err
		}
		for i, o := range old {
			r := agent.Result{Reading: agent.Reading{Sensor: "s", Value: float64(i), Time: at(o.s)}, Raw: float64(i)}
			if err := b.Put(readingKey(nil, tsNano(at(o.s)), o.seq), encodeReading(nil, &r)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	bdb.Close()

	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// on time, at the newest old time, and late into and around the old ones
	news := []int{30, 20, 10, 5, 0, 15, 40, 10}
	var rs []agent.Result
	for i, s := range news {
		v := float64(100 + i)
		rs = append(rs, agent.Result{Reading: agent.Reading{Sensor: "s", Value: v, Time: at(s)}, Raw: v})
	}
	db.Write(rs, nil)
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// time order; at equal times the older commit first
	want := []float64{0, 104, 103, 1, 2, 3, 102, 107, 105, 4, 101, 100, 106}
	got, err := db.Readings("s", time.Time{}, time.Time{}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	var vals []float64
	for _, r := range got {
		vals = append(vals, r.Value)
	}
	if !slices.Equal(vals, want) {
		t.Fatalf("readings = %v; want %v", vals, want)
	}
	got, err = db.Readings("s", at(10), at(20), 0, true)
	if err != nil {
		t.Fatal(err)
	}
	vals = vals[:0]
	for _, r := range got {
		vals = append(vals, r.Value)
	}
	if want := []float64{105, 107, 102, 3, 2, 1}; !slices.Equal(vals, want) {
		t.Fatalf("readings [10 s, 20 s) newest first = %v; want %v", vals, want)
	}
}

// dropOldest deletes whole runs while all of a run goes, and rewrites the
// run it stops in with the readings that stay.
func TestRuns_dropOldestSplitsARun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	var ar arena
	err = bdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("s"))
		if err != nil {
			return err
		}
		var rs []runReading
		for i := range 1000 { // several runs
			r := agent.Result{Reading: agent.Reading{Value: float64(i)}, Raw: float64(i)}
			rs = append(rs, runReading{uint64(i) * 1000, encodeReading(nil, &r)})
		}
		if err := putRuns(b, &ar, 0, rs); err != nil {
			return err
		}
		if n := keyCount(b); n < 3 {
			t.Fatalf("%d runs of 1000 readings; want several", n)
		}
		n, err := dropOldest(b, &ar, 1<<30, func(ts uint64, _ int) bool { return ts < 600_500 })
		if err != nil || n != 601 {
			t.Fatalf("dropOldest before 600.5 µs = %d, %v; want 601", n, err)
		}
		if n, err = dropOldest(b, &ar, 50, func(uint64, int) bool { return true }); err != nil || n != 50 {
			t.Fatalf("dropOldest at most 50 = %d, %v; want 50", n, err)
		}
		if n := countReadings(b); n != 349 {
			t.Fatalf("%d readings left; want 349", n)
		}
		k, v := b.Cursor().First()
		var first []uint64
		if err := forEntry(k, v, func(ts uint64, _ []byte) error { first = append(first, ts); return nil }); err != nil {
			return err
		}
		if first[0] != 651_000 || binaryTs(k) != 651_000 {
			t.Fatalf("first reading at %d under key time %d; want 651000 for both", first[0], binaryTs(k))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func keyCount(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

func binaryTs(k []byte) uint64 { return uint64(keyTime(k).UnixNano()) }
