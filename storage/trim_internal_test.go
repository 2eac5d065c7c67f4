package storage

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// A trim pass that empties a sensor's bucket must not ask bbolt for the
// last key of that bucket in the same transaction: Cursor.Last loops
// forever over a bucket whose leaves are all empty (they are rebalanced
// only at the commit). This stalled TestDB_retentionFlatFile about one run
// in two on 2 busy cores.
func TestTrimRaw_passAfterABucketWasEmptied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var rs []agent.Result
	for i := range 2000 { // several leaves, all long before the cut
		rs = append(rs, agent.Result{Reading: agent.Reading{Sensor: "a-old", Value: float64(i), Time: t0.Add(time.Duration(i) * time.Millisecond)}})
	}
	for i := range 100 { // a day later: the first pass's cut lands between them
		rs = append(rs, agent.Result{Reading: agent.Reading{Sensor: "b-new", Value: float64(i), Time: t0.Add(24*time.Hour + time.Duration(i)*time.Second)}})
	}
	db.Write(rs, nil)
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// trimRaw on the file, without a writer goroutine (it owns db.w)
	tdb := openWithoutWriter(t, path)
	bdb := tdb.bolt
	done := make(chan error, 1)
	go func() {
		done <- bdb.Update(func(tx *bolt.Tx) error {
			n, err := tdb.trimRaw(tx.Bucket(bucketReadings), []string{"a-old", "b-new"}, 10_000)
			if err == nil && n < 2000 {
				err = fmt.Errorf("trimmed %d; want at least a-old's 2,000 over the passes", n)
			}
			return err
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if err := bdb.Close(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		// not closing the file: Close would wait for the looping transaction
		t.Fatal("trimRaw did not return: a pass looped on an emptied bucket")
	}
}
