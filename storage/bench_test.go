package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
)

// procWriteBytes reads write_bytes from /proc/self/io (bytes this process
// caused to be sent to the block layer).
func procWriteBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func benchResult(sensor string, ts time.Time, v float64) agent.Result {
	return agent.Result{Reading: agent.Reading{Sensor: sensor, Kind: "temperature", Unit: "C", Value: v, Time: ts, Arrived: ts}, Raw: v}
}

// BenchmarkAppend: readings from 4 producers (like pipeline shards), 100
// sensors, fsync on, default options (100ms / 20000 group commit).
// Reports readings/s committed and bytes written per reading (bbolt pages
// and /proc/self/io write_bytes, which includes the filesystem journal).
func BenchmarkAppend(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "edge.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	base := time.Now().Add(-time.Hour)
	const per = 100 // readings per Write, one MQTT batch
	writes := max(b.N/per, 1)
	io0 := procWriteBytes(b)
	st0 := db.bolt.Stats()
	page0 := st0.TxStats.GetPageAlloc()
	b.ResetTimer()
	start := time.Now()
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			rs := make([]agent.Result, per)
			for i := g; i < writes; i += 4 {
				for j := range rs {
					n := i*per + j
					rs[j] = benchResult("sensor-"+strconv.Itoa(n%100), base.Add(time.Duration(n)*time.Microsecond), float64(n))
				}
				db.Write(rs, nil)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if err := db.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	n := float64(writes * per)
	b.ReportMetric(n/el.Seconds(), "readings/s")
	st := db.bolt.Stats()
	b.ReportMetric(float64(st.TxStats.GetPageAlloc()-page0)/n, "page-B/reading")
	if io0 >= 0 {
		b.ReportMetric(float64(procWriteBytes(b)-io0)/n, "io-B/reading")
	}
}

// BenchmarkAppendSensors: like BenchmarkAppend with more sensors (each
// commit of a per-sensor layout touches one leaf per sensor).
func BenchmarkAppendSensors1000(b *testing.B) { appendBench(b, 1000, 4, 100, false) }

// BenchmarkAppendCommit200 is QoS 1 without the broker: one producer writes
// 200 readings of 1000 sensors with a Commit and waits for it before the
// next write, so every commit holds 200 readings.
func BenchmarkAppendCommit200(b *testing.B) { appendBench(b, 1000, 1, 200, true) }

// appendBench: producers write per readings at a time, round-robin over
// sensors, optionally waiting for each write's commit; Flush at the end (it
// folds the journal, so its cost is counted). Reports readings/s committed,
// bbolt page bytes and /proc/self/io bytes written per reading.
func appendBench(b *testing.B, sensors, producers, per int, wait bool) {
	db, err := Open(filepath.Join(b.TempDir(), "edge.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	names := make([]string, sensors)
	for i := range names {
		names[i] = "sensor-" + strconv.Itoa(i)
	}
	base := time.Now().Add(-time.Hour)
	writes := max(b.N/per, 1)
	io0 := procWriteBytes(b)
	st0 := db.bolt.Stats()
	page0 := st0.TxStats.GetPageAlloc()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	errs := make(chan error, producers)
	for g := range producers {
		go func() {
			rs := make([]agent.Result, per)
			for i := g; i < writes; i += producers {
				var c *agent.Commit
				if wait {
					c = agent.NewCommit(per)
				}
				benchBatch(rs, names, base, i*per, time.Microsecond, c)
				db.Write(rs, nil)
				if wait {
					if err := c.Wait(context.Background()); err != nil {
						errs <- err
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range producers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	n := float64(writes * per)
	b.ReportMetric(n/el.Seconds(), "readings/s")
	st := db.bolt.Stats()
	b.ReportMetric(float64(st.TxStats.GetPageAlloc()-page0)/n, "page-B/reading")
	if io0 >= 0 {
		b.ReportMetric(float64(procWriteBytes(b)-io0)/n, "io-B/reading")
	}
}

// benchBatch fills rs with the readings first, first+1, ... of names in
// turn, step apart from base, each completing commit c (nil: none).
func benchBatch(rs []agent.Result, names []string, base time.Time, first int, step time.Duration, c *agent.Commit) {
	for j := range rs {
		n := first + j
		rs[j] = benchResult(names[n%len(names)], base.Add(time.Duration(n)*step), float64(n))
		rs[j].Commit = c
	}
}

// BenchmarkAppendUpdatePerReading is the baseline: one bbolt Update (two
// fsyncs) per reading, same options and layout.
func BenchmarkAppendUpdatePerReading(b *testing.B) {
	bdb, err := bolt.Open(filepath.Join(b.TempDir(), "base.db"), 0o600, &bolt.Options{FreelistType: bolt.FreelistArrayType, NoFreelistSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer bdb.Close()
	base := time.Now()
	io0 := procWriteBytes(b)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		r := benchResult("sensor-"+strconv.Itoa(i%100), base.Add(time.Duration(i)*time.Microsecond), float64(i))
		err := bdb.Update(func(tx *bolt.Tx) error {
			rb, err := tx.CreateBucketIfNotExists([]byte("readings"))
			if err != nil {
				return err
			}
			sb, err := rb.CreateBucketIfNotExists([]byte(r.Sensor))
			if err != nil {
				return err
			}
			sb.FillPercent = fillPercent
			return sb.Put(readingKey(nil, tsNano(r.Time), 0), encodeReading(nil, &r))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "readings/s")
	if io0 >= 0 {
		b.ReportMetric(float64(procWriteBytes(b)-io0)/float64(b.N), "io-B/reading")
	}
}

// weekFile builds (once per process) a file like a gateway's after a week at
// 1 Hz for 100 sensors with default retention: 48h of raw readings and 7
// days of 1-minute rollups per sensor. It is written straight through bbolt
// in large sorted transactions to keep the setup short (~17M readings).
// BENCH_SENSORS overrides the sensor count.
var weekPath string

func weekFile(b *testing.B) (string, time.Time, int) {
	sensors := 100
	if v, err := strconv.Atoi(os.Getenv("BENCH_SENSORS")); err == nil && v > 0 {
		sensors = v
	}
	end := time.Date(2026, 1, 8, 0, 0, 0, 0, time.UTC)
	if weekPath != "" {
		return weekPath, end, sensors
	}
	dir, err := os.MkdirTemp("", "edgeagent-bench-")
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "week.db")
	db, err := Open(path, Options{MaxBytes: 4 << 30, Now: func() time.Time { return end }})
	if err != nil {
		b.Fatal(err)
	}
	db.Close()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{FreelistType: bolt.FreelistArrayType, NoFreelistSync: true, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	start := end.Add(-7 * 24 * time.Hour)
	rawFrom := end.Add(-48 * time.Hour)
	for s := range sensors {
		name := []byte(fmt.Sprintf("sensor-%03d", s))
		err := bdb.Update(func(tx *bolt.Tx) error {
			rb, _ := tx.Bucket(bucketReadings).CreateBucketIfNotExists(name)
			rb.FillPercent = fillPercent
			ub, _ := tx.Bucket(bucketRollups).CreateBucketIfNotExists(name)
			ub.FillPercent = fillPercent
			_ = tx.Bucket(bucketSensors).Put(name, []byte("temperature\x00C"))
			var agg rollupAgg
			var raw []runReading
			var ar arena
			for t := start; t.Before(end); t = t.Add(time.Second) {
				v := 20 + float64(t.Unix()%600)/100
				ts := tsNano(t)
				agg.add(v, ts)
				if t.Second() == 59 {
					k := binary.BigEndian.AppendUint64(nil, ts-ts%uint64(time.Minute))
					if err := ub.Put(k, agg.encode(nil)); err != nil {
						return err
					}
					agg = rollupAgg{}
				}
				if !t.Before(rawFrom) {
					r := benchResult(string(name), t, v)
					raw = append(raw, runReading{ts, encodeReading(nil, &r)})
				}
			}
			return putRuns(rb, &ar, 0, raw)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := bdb.Sync(); err != nil {
		b.Fatal(err)
	}
	bdb.Close()
	weekPath = path
	return path, end, sensors
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// BenchmarkQuery measures query latency over weekFile; each op is one query,
// p50/p99 are reported in µs.
func BenchmarkQuery(b *testing.B) {
	path, end, sensors := weekFile(b)
	db, err := Open(path, Options{MaxBytes: 4 << 30, Now: func() time.Time { return end }})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.Logf("file %d MiB, %d sensors", db.Size()>>20, sensors)
	cases := []struct {
		name string
		q    func(i int) (int, error)
	}{
		{"raw-1h", func(i int) (int, error) { // 3600 points of one sensor
			from := end.Add(-time.Duration(1+i%40) * time.Hour)
			rs, err := db.Readings(fmt.Sprintf("sensor-%03d", i%sensors), from, from.Add(time.Hour), 0, false)
			return len(rs), err
		}},
		{"raw-last100-desc", func(i int) (int, error) {
			rs, err := db.Readings(fmt.Sprintf("sensor-%03d", i%sensors), time.Time{}, time.Time{}, 100, true)
			return len(rs), err
		}},
		{"rollup-7d", func(i int) (int, error) { // 10080 minutes
			rs, err := db.Rollups(fmt.Sprintf("sensor-%03d", i%sensors), end.Add(-7*24*time.Hour), end, 0)
			return len(rs), err
		}},
		{"latest-all", func(int) (int, error) {
			m, err := db.Latest()
			return len(m), err
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t := time.Now()
				n, err := c.q(i)
				lat = append(lat, time.Since(t))
				if err != nil || n == 0 {
					b.Fatalf("%s: %d results, %v", c.name, n, err)
				}
			}
			p50, p99 := percentiles(lat)
			b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
			b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkRetention measures one retention transaction deleting
// retentionChunk (10000) expired raw readings, with fsync.
func BenchmarkRetention(b *testing.B) {
	path := filepath.Join(b.TempDir(), "edge.db")
	now := time.Now()
	db, err := Open(path, Options{RawRetention: time.Hour, MaxRawPerSensor: -1, MaxBytes: 4 << 30, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer db.bolt.Close() // the writer is stopped by hand below
	// the writer goroutine also runs retention; stop it to measure steps alone
	db.mu.Lock()
	db.closing = true
	db.mu.Unlock()
	db.kickWriter()
	<-db.done
	// expired data for b.N steps: 100 sensors, 10000 readings per step
	old := now.Add(-2 * time.Hour)
	total := b.N * retentionChunk
	for lo := 0; lo < total; lo += 1_000_000 { // sorted, in txs of 1M
		hi := min(lo+1_000_000, total)
		err = db.bolt.Update(func(tx *bolt.Tx) error {
			var ar arena
			for s := range 100 {
				rb, _ := tx.Bucket(bucketReadings).CreateBucketIfNotExists([]byte(fmt.Sprintf("s%03d", s)))
				rb.FillPercent = fillPercent
				var raw []runReading
				for i := lo + s; i < hi; i += 100 {
					r := benchResult("", old.Add(time.Duration(float64(time.Hour)*float64(i)/float64(total))), float64(i))
					raw = append(raw, runReading{tsNano(r.Time), encodeReading(nil, &r)})
				}
				if err := putRuns(rb, &ar, 0, raw); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	deleted := 0
	for i := 0; i < b.N; i++ {
		deleted += db.retentionOnly()
	}
	b.StopTimer()
	if deleted == 0 {
		b.Fatal("retention deleted nothing")
	}
	b.ReportMetric(float64(deleted)/float64(b.N), "deleted/op")
}

// BenchmarkFold: one fold of 200,000 journal records over 1000 sensors
// (foldMax; the journal at max rate), parts of partSensors. Writing the
// journal is not timed. B/op is what the fold allocates (its record copies
// are most of it, and live while it runs).
func BenchmarkFold(b *testing.B) {
	const sensors, records, per = 1000, foldMax, 1000
	names := make([]string, sensors)
	for i := range names {
		names[i] = "sensor-" + strconv.Itoa(i)
	}
	base := time.Now().Add(-time.Hour)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db, err := Open(filepath.Join(b.TempDir(), "edge.db"), Options{FoldReadings: 1 << 30, FoldInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		rs := make([]agent.Result, per)
		var c *agent.Commit
		for w := 0; w < records/per; w++ {
			c = agent.NewCommit(per)
			benchBatch(rs, names, base, w*per, time.Millisecond, c)
			db.Write(rs, nil)
		}
		if err := c.Wait(context.Background()); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		b.StartTimer()
		if err := db.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := db.w.jCount; n != 0 {
			b.Fatalf("journal holds %d records after the fold", n)
		}
		db.Close()
	}
}
