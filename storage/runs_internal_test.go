package storage

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
	if vals := readValues(t, db, "s", time.Time{}, time.Time{}, false); !slices.Equal(vals, want) {
		t.Fatalf("readings = %v; want %v", vals, want)
	}
	if vals, want := readValues(t, db, "s", at(10), at(20), true), []float64{105, 107, 102, 3, 2, 1}; !slices.Equal(vals, want) {
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

// With more sensors than one fold moves, the journal is split into shards:
// every reading stays readable before and after the fold, a fold moves a
// shard at a time without writing records back, and a reopened file
// continues the sequence after the highest key of any shard.
func TestJournal_shards(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	write, check := shardedRounds(t)
	db, err := Open(path, Options{FoldReadings: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	write(db, 0) // the sensors become known: these go to shard 0
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	write(db, 1) // these are split over three shards
	if shards := journalShardKeys(db.bolt); len(shards) != 3 {
		t.Fatalf("journal keys by shard %v; want three shards", shards)
	}
	check(db, []float64{0, 1, 2, 10, 11, 12}, "in the journal")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// reopened: the sequence continues after every shard's keys, and the
	// known sensors give the number of shards at once
	db, err = Open(path, Options{FoldReadings: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	write(db, 2)
	check(db, []float64{0, 1, 2, 10, 11, 12, 20, 21, 22}, "after reopening")
	before := testutil.ToFloat64(db.m.folds)
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// one fold per shard: none wrote records back for a next one
	if n := testutil.ToFloat64(db.m.folds) - before; n != 3 {
		t.Errorf("%v folds; want 3, one per shard", n)
	}
	check(db, []float64{0, 1, 2, 10, 11, 12, 20, 21, 22}, "after the fold")
	if n := countAll(db); n != 3*3*shardedSensors {
		t.Fatalf("%d readings stored; want %d", n, 3*3*shardedSensors)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketJournal).Cursor().First(); k != nil {
			t.Errorf("journal key %x left after the fold", k)
		}
		return nil
	})
}

// shardedSensors is enough sensors for three journal shards.
const shardedSensors = 2*shardSensors + 100

// shardedRounds returns a writer of round r's readings, 3 for each of
// shardedSensors sensors (values r*10 + 0..2), and a check that a few of the
// sensors, from every shard, read want.
func shardedRounds(t *testing.T) (write func(db *DB, round int), check func(db *DB, want []float64, when string)) {
	t0 := time.Now().Truncate(time.Hour).Add(-time.Hour)
	write = func(db *DB, round int) {
		t.Helper()
		c := agent.NewCommit(shardedSensors * 3)
		var rs []agent.Result
		for i := range 3 {
			for s := range shardedSensors {
				v := float64(round*10 + i)
				rs = append(rs, agent.Result{Reading: agent.Reading{Sensor: fmt.Sprintf("s%04d", s), Value: v,
					Time: t0.Add(time.Duration(round*10+i) * time.Second), Commit: c}, Raw: v})
			}
		}
		db.Write(rs, nil)
		if err := c.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	check = func(db *DB, want []float64, when string) {
		t.Helper()
		for _, s := range []int{0, 1, shardSensors + 7, shardedSensors - 1} {
			if vals := readValues(t, db, fmt.Sprintf("s%04d", s), time.Time{}, time.Time{}, false); !slices.Equal(vals, want) {
				t.Fatalf("%s: s%04d readings %v; want %v", when, s, vals, want)
			}
		}
	}
	return write, check
}

// journalShardKeys counts the journal's keys by shard.
func journalShardKeys(bdb *bolt.DB) map[byte]int {
	shards := map[byte]int{}
	_ = bdb.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJournal).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			shards[keyShard(k)]++
		}
		return nil
	})
	return shards
}

// A fold deletes its journal keys a few at a time (delKeys), a transaction
// each, under a mark that says every record is moved. If the agent dies
// between two deletes, readers see each reading once, and the next fold
// finishes that shard before it folds any other: another shard's fold
// would replace the mark, and the moved records would be read, and folded,
// twice.
func TestFold_resumesBetweenDeletes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	write, check := shardedRounds(t)
	opts := Options{FoldReadings: 1 << 30, FoldInterval: time.Hour}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	write(db, 0)
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	write(db, 1) // over three shards
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// what a crash after the fold of shard 1 and its first delete leaves
	crashed := openWithoutWriter(t, path)
	crashed.w.delKeys = 2
	bdb := crashed.bolt
	var set foldSet
	err = bdb.View(func(tx *bolt.Tx) (err error) { set, err = crashed.gatherFold(tx, 1); return err })
	if err != nil {
		t.Fatal(err)
	}
	inShard1 := 0
	for _, g := range set.groups {
		inShard1 += g.n
	}
	err = bdb.Update(func(tx *bolt.Tx) error { _, _, err := crashed.foldPart(tx, &set, 0, len(set.groups)); return err })
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error { _, err := crashed.deleteFolded(tx, &set); return err })
	if err != nil {
		t.Fatal(err)
	}
	shards := journalShardKeys(bdb)
	if len(shards) != 3 || shards[1] != set.keys-2 {
		t.Fatalf("journal keys by shard %v after one delete of 2 of shard 1's %d keys", shards, set.keys)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := testutil.ToFloat64(db.m.journalReadings); n != float64(3*shardedSensors-inShard1) {
		t.Errorf("journal holds %v readings after reopening; want %d (not shard 1's %d)", n, 3*shardedSensors-inShard1, inShard1)
	}
	check(db, []float64{0, 1, 2, 10, 11, 12}, "between deletes")
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	check(db, []float64{0, 1, 2, 10, 11, 12}, "after the fold")
	if n := countAll(db); n != 2*3*shardedSensors {
		t.Fatalf("%d readings stored; want %d", n, 2*3*shardedSensors)
	}
	if shards := journalShardKeys(db.bolt); len(shards) != 0 {
		t.Errorf("journal keys by shard %v left after the fold", shards)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		if _, ok := readFoldMark(tx); ok {
			t.Error("fold mark left after the fold")
		}
		return nil
	})
}

// A fold of more sensors than a part moves commits part after part. If
// the agent dies between two parts, the file holds some sensors' records
// both in their buckets and in the journal: every reader sees each reading
// once (the fold mark), and the next fold moves the rest, once.
func TestFold_resumesBetweenParts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	t0 := time.Now().Truncate(time.Hour).Add(-time.Hour)
	const sensors, per = 10, 20
	name := func(s int) string { return fmt.Sprintf("p%d", s) }
	model := map[string][]float64{} // by time; equal times in commit order
	write := func(db *DB, round int) {
		t.Helper()
		c := agent.NewCommit(sensors * per)
		var rs []agent.Result
		for s := range sensors {
			for i := range per {
				// round 1 goes between round 0's readings (late), or at
				// the same time as one (every other reading)
				at := t0.Add(time.Duration(2*i+round*(i%2)) * time.Minute / 4)
				v := float64(round*1000 + s*100 + i)
				rs = append(rs, agent.Result{Reading: agent.Reading{Sensor: name(s), Value: v, Time: at, Commit: c}, Raw: v})
			}
		}
		db.Write(rs, nil)
		if err := c.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for s := range sensors { // the order write and the runs agree on
		for i := range per {
			model[name(s)] = append(model[name(s)], float64(s*100+i), float64(1000+s*100+i))
		}
	}
	check := func(db *DB, when string) {
		t.Helper()
		for s := range sensors {
			want := model[name(s)]
			if vals := readValues(t, db, name(s), time.Time{}, time.Time{}, false); !slices.Equal(vals, want) {
				t.Fatalf("%s: %s readings %v; want %v", when, name(s), vals, want)
			}
			rolls, err := db.Rollups(name(s), time.Time{}, time.Time{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range rolls {
				n += r.Count
			}
			if n != len(want) {
				t.Fatalf("%s: %s rollups count %d readings; want %d", when, name(s), n, len(want))
			}
		}
	}
	opts := Options{FoldReadings: 1 << 30, FoldInterval: time.Hour}
	db, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	write(db, 0)
	if err := db.Flush(t.Context()); err != nil { // round 0 into runs
		t.Fatal(err)
	}
	write(db, 1) // round 1 in the journal
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// what a crash after the first of four parts leaves: a writer of three
	// sensors a part, stopped after one
	crashed := openWithoutWriter(t, path)
	bdb := crashed.bolt
	var set foldSet
	err = bdb.View(func(tx *bolt.Tx) (err error) { set, err = crashed.gatherFold(tx, 0); return err })
	if err != nil {
		t.Fatal(err)
	}
	if len(set.groups) != sensors {
		t.Fatalf("fold of %d sensors; want %d", len(set.groups), sensors)
	}
	err = bdb.Update(func(tx *bolt.Tx) error { _, _, err := crashed.foldPart(tx, &set, 0, 3); return err })
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := testutil.ToFloat64(db.m.journalReadings); n != (sensors-3)*per {
		t.Errorf("journal holds %v readings after reopening; want %d (three sensors folded)", n, (sensors-3)*per)
	}
	check(db, "between parts")
	db.w.part = 3
	if err := db.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	check(db, "after the fold")
	if n := countAll(db); n != 2*sensors*per {
		t.Fatalf("%d readings stored; want %d", n, 2*sensors*per)
	}
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketJournal).Cursor().First(); k != nil {
			t.Errorf("journal key %x left after the fold", k)
		}
		if _, ok := readFoldMark(tx); ok {
			t.Error("fold mark left after the fold")
		}
		return nil
	})
}

// openWithoutWriter opens the closed file at path with bbolt alone, in a DB
// that has writer state but no writer goroutine, so that a test may call
// the writer's methods (they own db.w) itself.
func openWithoutWriter(t *testing.T, path string) *DB {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{bolt: bdb}
	db.w.init()
	return db
}

// readValues returns the values of sensor's readings in [from, to).
func readValues(t *testing.T, db *DB, sensor string, from, to time.Time, desc bool) []float64 {
	t.Helper()
	got, err := db.Readings(sensor, from, to, 0, desc)
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]float64, 0, len(got))
	for _, r := range got {
		vals = append(vals, r.Value)
	}
	return vals
}

func countAll(db *DB) int {
	n := 0
	_ = db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReadings).ForEach(func(name, _ []byte) error {
			n += countReadings(tx.Bucket(bucketReadings).Bucket(name))
			return nil
		})
	})
	return n
}

// A fold the writer starts lets due batches commit between its
// transactions (commitBetween): a durable write made while a long fold
// runs is acknowledged before the fold ends, not after all of it.
func TestFold_commitsBetweenParts(t *testing.T) {
	const sensors = 400
	db, err := Open(filepath.Join(t.TempDir(), "edge.db"), Options{FoldReadings: sensors})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.w.part = 1 // a transaction a sensor: a fold of 400 transactions
	folding := func() bool {
		db.mu.Lock()
		defer db.mu.Unlock()
		return db.folding
	}
	t0 := time.Now().Add(-time.Minute)
	rs := make([]agent.Result, sensors)
	for s := range rs {
		rs[s] = agent.Result{Reading: agent.Reading{Sensor: fmt.Sprintf("f%03d", s), Value: 1, Time: t0}, Raw: 1}
	}
	db.Write(rs, nil) // committed within the commit interval, then folded
	for deadline := time.Now().Add(10 * time.Second); !folding(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no fold started within 10 s")
		}
	}
	c := agent.NewCommit(1)
	db.Write([]agent.Result{{Reading: agent.Reading{Sensor: "durable", Value: 2, Time: t0, Commit: c}, Raw: 2}}, nil)
	if err := c.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !folding() {
		t.Error("the durable write was acknowledged only after the fold ended")
	}
	if vals := readValues(t, db, "durable", time.Time{}, time.Time{}, false); !slices.Equal(vals, []float64{2}) {
		t.Errorf("durable: readings %v; want [2]", vals)
	}
}
