package storage_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

// writeDurable writes rs and waits for their commit without Flush (which
// would fold the journal).
func writeDurable(t *testing.T, db *storage.DB, rs []agent.Result) {
	t.Helper()
	c := agent.NewCommit(len(rs))
	for i := range rs {
		rs[i].Commit = c
	}
	db.Write(rs, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// snapshot runs every query the API uses over sensors a, b and c.
func snapshot(t *testing.T, db *storage.DB) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, s := range []string{"a", "b", "c"} {
		for _, q := range []struct {
			from, to time.Time
			limit    int
			desc     bool
		}{
			{}, {limit: 3}, {desc: true}, {limit: 4, desc: true},
			{from: t0.Add(30 * time.Second), to: t0.Add(150 * time.Second)},
			{from: t0.Add(30 * time.Second), to: t0.Add(150 * time.Second), desc: true, limit: 5},
			{from: t0.Add(2 * time.Second), to: t0.Add(2*time.Second + 1)},
		} {
			rs, err := db.Results(s, q.from, q.to, q.limit, q.desc)
			if err != nil {
				t.Fatal(err)
			}
			for i := range rs {
				rs[i].Time, rs[i].Arrived = rs[i].Time.UTC(), rs[i].Arrived.UTC()
			}
			out[fmt.Sprintf("results %s %+v", s, q)] = rs
		}
		ro, err := db.Rollups(s, time.Time{}, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ro {
			ro[i].Start = ro[i].Start.UTC()
		}
		out["rollups "+s] = ro
		ro, _ = db.Rollups(s, t0.Add(time.Minute), t0.Add(3*time.Minute), 1)
		for i := range ro {
			ro[i].Start = ro[i].Start.UTC()
		}
		out["rollups 1 "+s] = ro
	}
	latest, err := db.Latest()
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range latest {
		r.Time, r.Arrived = r.Time.UTC(), r.Arrived.UTC()
		latest[k] = r
	}
	out["latest"] = latest
	return out
}

// TestDB_journalQueries: queries give the same answers while readings are
// still in the journal (committed, not folded), partly folded, and after the
// fold, including equal timestamps, out-of-order times, suppressed results
// and detector fields.
func TestDB_journalQueries(t *testing.T) {
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "edge.db")
	db := mustOpen(t, path, storage.Options{FoldInterval: time.Hour, FoldReadings: 1 << 30, Registerer: reg})
	batch := func(n int) []agent.Result {
		var rs []agent.Result
		for i := range 40 {
			at := t0.Add(time.Duration(i*5) * time.Second)
			if i%7 == 3 {
				at = t0.Add(2 * time.Second) // many at one time, across batches
			}
			r := res([]string{"a", "b"}[i%2], at, float64(n*1000+i))
			if i%5 == 0 {
				r.Score, r.Detector, r.Band, r.Raw = 0.5, "zscore", agent.Band{Lo: 1, Hi: 2}, 7
			}
			r.Suppressed = i%9 == 4
			rs = append(rs, r)
		}
		return rs
	}
	// batch 1 folded into the buckets, batch 2 and 3 only in the journal
	writeDurable(t, db, batch(1))
	flush(t, db)
	writeDurable(t, db, batch(2))
	writeDurable(t, db, append(batch(3), res("c", t0.Add(90*time.Second), 3)))
	if n := counter(t, reg, "edgeagent_storage_journal_readings"); n != 81 {
		t.Fatalf("journal_readings = %v; want 81 (batches 2 and 3)", n)
	}
	inJournal := snapshot(t, db)
	if got, _ := db.Readings("c", time.Time{}, time.Time{}, 0, false); len(got) != 1 || got[0].Value != 3 || got[0].Unit != "°C" {
		t.Fatalf("Readings(c) from the journal only = %+v", got)
	}

	// reopen: the journal is in the file
	db.Close()
	db = mustOpen(t, path, storage.Options{FoldInterval: time.Hour, FoldReadings: 1 << 30, Registerer: prometheus.NewRegistry()})
	if again := snapshot(t, db); !reflect.DeepEqual(again, inJournal) {
		t.Fatalf("after reopen, queries differ")
	}
	flush(t, db) // folds
	folded := snapshot(t, db)
	for k, v := range inJournal {
		if !reflect.DeepEqual(v, folded[k]) {
			t.Errorf("%s: differs between the journal and the folded buckets", k)
			if a, ok := v.([]agent.Result); ok {
				t.Logf("in journal: %v", resultValues(a))
				t.Logf("folded:     %v", resultValues(folded[k].([]agent.Result)))
			}
		}
	}
	// the suppressed reading is only in the rollups; equal times keep commit order
	a, _ := db.Readings("a", t0.Add(2*time.Second), t0.Add(2*time.Second+1), 0, false)
	if want := "[1010 1024 1038 2010 2024 2038 3010 3024 3038]"; fmt.Sprint(values(a)) != want {
		t.Errorf("a at 2s = %v; want %s", values(a), want)
	}
	// a's first minute: i = 0, 2, ..., 10 (4 suppressed) and 24, 38 at 2s, in 3 batches
	ro, _ := db.Rollups("a", t0, t0.Add(time.Minute), 0)
	if len(ro) != 1 || ro[0].Count != 3*8 {
		t.Errorf("rollup of a's first minute = %+v; want 24 readings (suppressed included)", ro)
	}
	a, _ = db.Readings("a", t0.Add(20*time.Second), t0.Add(20*time.Second+1), 0, false)
	if len(a) != 0 {
		t.Errorf("suppressed readings stored raw: %v", values(a))
	}
}

// TestDB_journalFoldsOnItsOwn: the writer folds when the journal reaches
// FoldReadings or FoldInterval, without Flush.
func TestDB_journalFoldsOnItsOwn(t *testing.T) {
	for _, opts := range []storage.Options{{FoldReadings: 500, FoldInterval: time.Hour}, {FoldInterval: 50 * time.Millisecond}} {
		reg := prometheus.NewRegistry()
		opts.Registerer = reg
		db := mustOpen(t, "", opts)
		for i := range 10 {
			rs := make([]agent.Result, 100)
			for j := range rs {
				rs[j] = res(fmt.Sprintf("s%d", j%10), t0.Add(time.Duration(i*100+j)*time.Millisecond), float64(i*100+j))
			}
			writeDurable(t, db, rs)
		}
		deadline := time.Now().Add(10 * time.Second)
		for counter(t, reg, "edgeagent_storage_journal_folds_total") == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := counter(t, reg, "edgeagent_storage_journal_folds_total"); n == 0 {
			t.Fatalf("%+v: no fold", opts)
		}
		rs, _ := db.Readings("s3", time.Time{}, time.Time{}, 0, false)
		if len(rs) != 100 {
			t.Errorf("%+v: s3 has %d readings; want 100", opts, len(rs))
		}
	}
}

// TestOpen_schema1WithData: a schema 1 file (no journal) keeps its readings
// and takes new ones.
func TestOpen_schema1WithData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db := mustOpen(t, path, storage.Options{})
	db.Write([]agent.Result{res("a", t0, 1)}, nil)
	flush(t, db)
	db.Close()
	// make it look like schema 1: no journal bucket
	setSchema(t, path, 1, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("journal")) })
	db = mustOpen(t, path, storage.Options{})
	writeDurable(t, db, []agent.Result{res("a", t0.Add(time.Second), 2)})
	if got, _ := db.Readings("a", time.Time{}, time.Time{}, 0, false); fmt.Sprint(values(got)) != "[1 2]" {
		t.Fatalf("after migration from schema 1: Readings(a) = %v; want [1 2]", values(got))
	}
}

func resultValues(rs []agent.Result) []float64 {
	out := make([]float64, len(rs))
	for i := range rs {
		out[i] = rs[i].Value
	}
	return out
}

// TestDB_journalPartialFolds: with a small budget a fold commits in parts
// of only some sensors each (a part's dirty pages must fit the budget's
// free room); every reading ends up in its bucket, in order.
func TestDB_journalPartialFolds(t *testing.T) {
	reg := prometheus.NewRegistry()
	// 1 MiB: room for 64 sensors per fold
	db := mustOpen(t, "", storage.Options{MaxBytes: 1 << 20, FoldReadings: 500, FoldInterval: 20 * time.Millisecond, Registerer: reg})
	const sensors, per = 200, 10
	for i := range per {
		rs := make([]agent.Result, sensors)
		for s := range rs {
			// equal times for every third round: order must survive the put-back
			at := t0.Add(time.Duration(i-i%3) * time.Second)
			rs[s] = res(fmt.Sprintf("s%03d", s), at, float64(i*1000+s))
		}
		writeDurable(t, db, rs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for counter(t, reg, "edgeagent_storage_journal_readings") > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	folds := counter(t, reg, "edgeagent_storage_journal_folds_total")
	if n := counter(t, reg, "edgeagent_storage_journal_readings"); n != 0 || folds < 1 {
		t.Fatalf("journal_readings = %v after %v folds; want 0 after at least 1", n, folds)
	}
	// every fold moves all 200 sensors in parts of at most 64, and every
	// write is a commit of its own
	if commits, least := counter(t, reg, "edgeagent_storage_commits_total"), per+folds*float64((sensors+63)/64); commits < least {
		t.Errorf("%v commits for %v folds and %d writes; want at least %v (parts of at most 64 sensors)", commits, folds, per, least)
	}
	for s := range sensors {
		rs, err := db.Readings(fmt.Sprintf("s%03d", s), time.Time{}, time.Time{}, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, per)
		for i := range want {
			want[i] = float64(i*1000 + s)
		}
		if fmt.Sprint(values(rs)) != fmt.Sprint(want) {
			t.Fatalf("s%03d = %v; want %v", s, values(rs), want)
		}
	}
	t.Logf("%v folds", folds)
}
