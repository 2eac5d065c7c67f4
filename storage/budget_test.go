package storage_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

// envInt returns the integer in the environment variable name, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestDB_budgetManySensors is the soak's defect as a test: many sensors
// (each costs its own leaf pages, and a commit rewrites one leaf per sensor)
// and several times the byte budget of raw data. Retention must keep the
// file away from bbolt's MaxSize, so that no commit fails and no reading is
// dropped; the oldest raw readings are trimmed instead.
// STORAGE_BUDGET_SENSORS / _READINGS / _MIB change the load (the soak's
// 5000 sensors need at least ~64 MiB: every sensor keeps a raw and a rollup
// leaf, ~8 KiB, and a fold needs room for the pages it rewrites).
func TestDB_budgetManySensors(t *testing.T) {
	sensors := envInt("STORAGE_BUDGET_SENSORS", 1000)
	total := envInt("STORAGE_BUDGET_READINGS", 1_000_000)
	budget := int64(envInt("STORAGE_BUDGET_MIB", 12)) << 20
	if testing.Short() {
		total /= 4
	} else if raceEnabled {
		total = total * 2 / 5
	}
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{MaxBytes: budget, RawRetention: 1000 * time.Hour, MaxRawPerSensor: -1,
		Registerer: reg, Logger: testLogger(t)})
	maxSize := budget + max(budget/4, 16<<20) // as documented on Options.MaxBytes
	names := make([]string, sensors)
	for i := range names {
		names[i] = fmt.Sprintf("sensor-%04d", i)
	}
	const per = 1000
	rs := make([]agent.Result, per)
	var peak int64
	for n := 0; n < total; n += per {
		for j := range rs {
			i := n + j
			// 5,000 readings/s in total, as in the soak
			rs[j] = res(names[i%sensors], t0.Add(time.Duration(i)*200*time.Microsecond), float64(i))
		}
		var as []agent.Alert
		if n%(100*per) == 0 {
			as = append(as, alert(fmt.Sprintf("a%07d", n), names[0], agent.AlertFiring, t0))
		}
		db.Write(rs, as)
		if n%(50*per) == 0 {
			peak = max(peak, db.Size())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		t.Errorf("Flush: %v", err)
	}
	peak = max(peak, db.Size())
	written := counter(t, reg, "edgeagent_storage_readings_written_total")
	trimmed := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "byte_budget")
	failed := counter(t, reg, "edgeagent_storage_commit_failures_total")
	dropped := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "commit_failed")
	pageBytes := counter(t, reg, "edgeagent_storage_bytes_written_total")
	retries := counter(t, reg, "edgeagent_storage_size_limit_retries_total")
	t.Logf("%d readings over %d sensors, budget %d MiB: written %v, trimmed %v, file peak %.1f MiB (MaxSize %.1f MiB), %.0f B written/reading, %v size-limit retries",
		total, sensors, budget>>20, written, trimmed, float64(peak)/(1<<20), float64(maxSize)/(1<<20), pageBytes/written, retries)
	if failed != 0 || dropped != 0 {
		t.Errorf("%v commits failed, %v readings dropped; want none", failed, dropped)
	}
	if written != float64(total) {
		t.Errorf("readings_written_total = %v; want %d", written, total)
	}
	if trimmed == 0 {
		t.Errorf("nothing trimmed: the load did not exceed the budget")
	}
	if peak >= maxSize {
		t.Errorf("file reached %d bytes; MaxSize is %d", peak, maxSize)
	}
	if err := db.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
	// the newest readings of every sensor survive
	for _, s := range []int{0, sensors / 2, sensors - 1} {
		got, err := db.Readings(names[s], time.Time{}, time.Time{}, 1, true)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: newest reading: %v, %v", names[s], got, err)
		}
		last := (total-1)/sensors*sensors + s
		if last >= total {
			last -= sensors
		}
		if got[0].Value != float64(last) {
			t.Errorf("%s: newest value %v; want %d", names[s], got[0].Value, last)
		}
	}
}

// TestDB_budgetRetryAtMaxSize: a batch far larger than the room the budget
// keeps free (here 150,000 readings in one commit on a file at its budget)
// hits bbolt's MaxSize; the writer trims and commits the same batch again
// instead of dropping it.
func TestDB_budgetRetryAtMaxSize(t *testing.T) {
	const budget = 20 << 20 // between 16 and 64 MiB, MaxSize = budget + 16 MiB: growth stops at the budget
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{MaxBytes: budget, MaxBatch: 200_000, CommitInterval: time.Hour,
		RawRetention: 1000 * time.Hour, MaxRawPerSensor: -1, Registerer: reg, Logger: testLogger(t)})
	n := 0
	write := func(count, sensors int) {
		rs := make([]agent.Result, count)
		for j := range rs {
			rs[j] = res(fmt.Sprintf("s%03d", n%sensors), t0.Add(time.Duration(n)*time.Millisecond), float64(n))
			// detector fields: ~45 bytes a reading in its run
			rs[j].Score, rs[j].Detector, rs[j].Band = 0.5, "zscore", agent.Band{Lo: float64(n) - 1, Hi: float64(n) + 1}
			n++
		}
		c := agent.NewCommit(count)
		for j := range rs {
			rs[j].Commit = c
		}
		db.Write(rs, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Wait(ctx); err != nil {
			t.Fatalf("commit of %d readings: %v", count, err)
		}
	}
	rounds := 40 // ~1.6x the budget of raw data, in commits of 20,000
	if raceEnabled {
		rounds = 24 // enough to reach the budget
	}
	for range rounds {
		write(20_000, 100)
	}
	flush(t, db)
	before := db.Size()
	write(150_000, 100)
	flush(t, db)
	retries := counter(t, reg, "edgeagent_storage_size_limit_retries_total")
	t.Logf("file %d -> %d bytes; %v size-limit retries; trimmed %v", before, db.Size(), retries,
		counter(t, reg, "edgeagent_storage_dropped_total", "reason", "byte_budget"))
	if dropped := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "commit_failed"); dropped != 0 {
		t.Errorf("%v readings dropped", dropped)
	}
	if retries == 0 {
		t.Errorf("the big batch never hit MaxSize: the test does not exercise the retry")
	}
	got, err := db.Readings("s007", time.Time{}, time.Time{}, 1, true)
	if err != nil || len(got) != 1 || got[0].Value != float64(n-100+7) {
		t.Errorf("newest reading of s007 = %v, %v; want %d", got, err, n-100+7)
	}
}
