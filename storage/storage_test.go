package storage_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

var t0 = time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)

func mustOpen(t testing.TB, path string, opts storage.Options) *storage.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "edge.db")
	}
	db, err := storage.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func res(sensor string, ts time.Time, v float64) agent.Result {
	return agent.Result{Reading: agent.Reading{Sensor: sensor, Kind: "temperature", Unit: "°C", Value: v, Time: ts, Arrived: ts}, Raw: v}
}

func flush(t testing.TB, db *storage.DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func values(rs []agent.Reading) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = r.Value
	}
	return out
}

// A sensor's kind and unit are stored as its latest reading says, also
// when they change within a batch and after a reopen.
func TestDB_Write_kindAndUnitFollowTheLatest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db := mustOpen(t, path, storage.Options{})
	f := res("a", t0.Add(time.Second), 70)
	f.Unit = "°F"
	db.Write([]agent.Result{res("a", t0, 21), f, res("b", t0, 1)}, nil)
	flush(t, db)
	unit := func(db *storage.DB, sensor string) string {
		t.Helper()
		got, err := db.Readings(sensor, time.Time{}, time.Time{}, 1, true)
		if err != nil || len(got) != 1 {
			t.Fatalf("Readings(%s) = %v, %v", sensor, got, err)
		}
		return got[0].Kind + " " + got[0].Unit
	}
	if got := unit(db, "a"); got != "temperature °F" {
		t.Fatalf("a after a batch ending in °F: %q", got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = mustOpen(t, path, storage.Options{})
	c := res("a", t0.Add(2*time.Second), 22)
	c.Kind = ""
	db.Write([]agent.Result{c}, nil)
	flush(t, db)
	if got := unit(db, "a"); got != " °C" {
		t.Fatalf("a after a reopen and a reading without a kind: %q", got)
	}
	if got := unit(db, "b"); got != "temperature °C" {
		t.Fatalf("b: %q", got)
	}
}

func TestDB_Write_orderAndDuplicates(t *testing.T) {
	db := mustOpen(t, "", storage.Options{})
	// three readings share a timestamp, one arrives out of order, in two batches
	db.Write([]agent.Result{
		res("a", t0.Add(2*time.Second), 2), res("a", t0.Add(2*time.Second), 3),
		res("b", t0, 100), res("a", t0.Add(1*time.Second), 1),
	}, nil)
	flush(t, db)
	db.Write([]agent.Result{res("a", t0.Add(2*time.Second), 4), res("a", t0.Add(1500*time.Millisecond), 1.5), res("a", t0.Add(3*time.Second), 5)}, nil)
	flush(t, db)

	got, err := db.Readings("a", time.Time{}, time.Time{}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{1, 1.5, 2, 3, 4, 5}; fmt.Sprint(values(got)) != fmt.Sprint(want) {
		t.Fatalf("Readings(a) = %v; want %v", values(got), want)
	}
	if got[0].Kind != "temperature" || got[0].Unit != "°C" || got[0].Sensor != "a" || !got[0].Time.Equal(t0.Add(time.Second)) {
		t.Errorf("Readings(a)[0] = %+v", got[0])
	}
	got, _ = db.Readings("a", t0.Add(1500*time.Millisecond), t0.Add(3*time.Second), 0, true)
	if want := []float64{4, 3, 2, 1.5}; fmt.Sprint(values(got)) != fmt.Sprint(want) {
		t.Fatalf("Readings(a, desc [1.5s,3s)) = %v; want %v", values(got), want)
	}
	got, _ = db.Readings("a", t0, time.Time{}, 2, true)
	if want := []float64{5, 4}; fmt.Sprint(values(got)) != fmt.Sprint(want) {
		t.Fatalf("Readings(a, desc, limit 2) = %v; want %v", values(got), want)
	}
	got, _ = db.Readings("a", t0, t0.Add(2*time.Second), 0, false)
	if want := []float64{1, 1.5}; fmt.Sprint(values(got)) != fmt.Sprint(want) {
		t.Fatalf("Readings(a, [0,2s)) = %v; want %v", values(got), want)
	}
	if got, _ := db.Readings("nope", time.Time{}, time.Time{}, 0, false); len(got) != 0 {
		t.Fatalf("Readings(nope) = %v; want none", got)
	}
	latest, err := db.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if latest["a"].Value != 5 || latest["b"].Value != 100 || len(latest) != 2 {
		t.Fatalf("Latest() = %+v", latest)
	}
	full, _ := db.Results("a", time.Time{}, time.Time{}, 1, false)
	if len(full) != 1 || full[0].Raw != 1 {
		t.Fatalf("Results = %+v", full)
	}
}

func TestDB_Results_detectorFields(t *testing.T) {
	db := mustOpen(t, "", storage.Options{})
	r := res("a", t0, 20)
	r.Raw, r.Score, r.Detector, r.Band, r.Flags = 25, 0.75, "zscore", agent.Band{Lo: 18, Hi: 22}, agent.FlagSuspect
	r.Arrived = t0.Add(1500 * time.Millisecond)
	db.Write([]agent.Result{r}, nil)
	flush(t, db)
	got, err := db.Results("a", time.Time{}, time.Time{}, 0, false)
	if err != nil || len(got) != 1 {
		t.Fatalf("Results = %v, %v", got, err)
	}
	g := got[0]
	if g.Raw != 25 || g.Score != 0.75 || g.Detector != "zscore" || g.Band != r.Band || g.Flags != agent.FlagSuspect || !g.Arrived.Equal(r.Arrived) {
		t.Fatalf("Results()[0] = %+v; want fields of %+v", g, r)
	}
}

func TestDB_Write_commitDone(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{Registerer: reg, CommitInterval: time.Hour})
	c := agent.NewCommit(3)
	rs := []agent.Result{res("a", t0, 1), res("a", t0.Add(time.Second), 2), res("b", t0, 3)}
	for i := range rs {
		rs[i].Commit = c
	}
	// a waiter makes the writer commit at once, despite the 1h interval
	db.Write(rs, nil)
	rs[0].Value = 99 // Write copied the slice
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("Commit.Wait = %v", err)
	}
	got, _ := db.Readings("a", time.Time{}, time.Time{}, 0, false)
	if fmt.Sprint(values(got)) != "[1 2]" {
		t.Fatalf("after Commit.Wait: Readings(a) = %v; want [1 2]", values(got))
	}
	if got := counter(t, reg, "edgeagent_storage_readings_written_total"); got != 3 {
		t.Errorf("readings_written_total = %v; want 3", got)
	}
	if got := counter(t, reg, "edgeagent_storage_commits_total"); got < 1 {
		t.Errorf("commits_total = %v; want >= 1", got)
	}
	if got := counter(t, reg, "edgeagent_storage_bytes_written_total"); got < 4096 {
		t.Errorf("bytes_written_total = %v; want >= one page", got)
	}
	if got := counter(t, reg, "edgeagent_storage_file_bytes"); got <= 0 || int64(got) != db.Size() {
		t.Errorf("file_bytes = %v; Size() = %d", got, db.Size())
	}

	// QoS 0 readings (no Commit) wait for the interval; Flush forces them.
	db.Write([]agent.Result{res("c", t0, 7)}, nil)
	flush(t, db)
	if got, _ := db.Readings("c", time.Time{}, time.Time{}, 0, false); len(got) != 1 {
		t.Fatalf("after Flush: Readings(c) = %v", got)
	}
	if err := db.Ready(); err != nil {
		t.Fatalf("Ready() = %v", err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	late := agent.NewCommit(1)
	r := res("a", t0, 1)
	r.Commit = late
	db.Write([]agent.Result{r}, nil)
	if err := late.Wait(ctx); !errors.Is(err, agent.ErrClosed) {
		t.Fatalf("Write after Close: Commit.Wait = %v; want ErrClosed", err)
	}
	if err := db.Ready(); !errors.Is(err, agent.ErrClosed) {
		t.Fatalf("Ready after Close = %v; want ErrClosed", err)
	}
}

func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func TestDB_Write_groupCommit(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{Registerer: reg, MaxBatch: 1000})
	// many concurrent QoS 1 writers; every reading completes exactly once
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				c := agent.NewCommit(100)
				rs := make([]agent.Result, 100)
				for j := range rs {
					rs[j] = res(fmt.Sprintf("s%d", g), t0.Add(time.Duration(i*100+j)*time.Millisecond), float64(j))
					rs[j].Commit = c
				}
				db.Write(rs, nil)
				if err := c.Wait(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := counter(t, reg, "edgeagent_storage_readings_written_total"); got != 8*50*100 {
		t.Fatalf("readings_written_total = %v; want %d", got, 8*50*100)
	}
	commits := counter(t, reg, "edgeagent_storage_commits_total")
	if commits >= 8*50 {
		t.Errorf("commits_total = %v for %d waiting writes: no grouping", commits, 8*50)
	}
	t.Logf("%v commits for %d Write calls", commits, 8*50)
}

func TestDB_Rollups(t *testing.T) {
	db := mustOpen(t, "", storage.Options{})
	a := res("a", t0.Add(10*time.Second), 4)
	b := res("a", t0.Add(50*time.Second), 10)
	b.Suppressed = true // deadband: rollups only
	c := res("a", t0.Add(70*time.Second), 1)
	db.Write([]agent.Result{b, a, c}, nil)
	flush(t, db)
	db.Write([]agent.Result{res("a", t0.Add(20*time.Second), 1)}, nil) // merges into minute 0
	flush(t, db)

	got, err := db.Rollups("a", t0, t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []storage.Rollup{
		{Start: t0, Count: 3, Min: 1, Max: 10, Mean: 5, Last: 10},
		{Start: t0.Add(time.Minute), Count: 1, Min: 1, Max: 1, Mean: 1, Last: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("Rollups = %+v; want %+v", got, want)
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || got[i].Count != want[i].Count || got[i].Min != want[i].Min ||
			got[i].Max != want[i].Max || got[i].Mean != want[i].Mean || got[i].Last != want[i].Last {
			t.Errorf("Rollups[%d] = %+v; want %+v", i, got[i], want[i])
		}
	}
	raw, _ := db.Readings("a", time.Time{}, time.Time{}, 0, false)
	if fmt.Sprint(values(raw)) != "[4 1 1]" {
		t.Errorf("raw = %v; want the suppressed reading left out: [4 1 1]", values(raw))
	}
	if got, _ := db.Rollups("a", t0.Add(time.Minute), time.Time{}, 0); len(got) != 1 {
		t.Errorf("Rollups from minute 1 = %+v", got)
	}
}

func alert(id, sensor string, state agent.AlertState, at time.Time) agent.Alert {
	return agent.Alert{ID: id, Sensor: sensor, Detector: "zscore", State: state, StartedAt: t0, UpdatedAt: at, Score: 0.9}
}

func TestDB_Alerts(t *testing.T) {
	db := mustOpen(t, "", storage.Options{Outbox: true, Gateway: "gw1"})
	a1 := alert("01-a", "a", agent.AlertFiring, t0)
	a2 := alert("02-b", "b", agent.AlertFiring, t0)
	a2.StartedAt = t0.Add(time.Minute)
	a3 := alert("03-a", "a", agent.AlertFiring, t0)
	a3.StartedAt = t0.Add(2 * time.Minute)
	db.Write(nil, []agent.Alert{a1, a2, a3})
	flush(t, db)
	resolved := a1
	resolved.State, resolved.UpdatedAt, resolved.ResolvedAt = agent.AlertResolved, t0.Add(5*time.Minute), t0.Add(5*time.Minute)
	db.Write(nil, []agent.Alert{resolved})
	flush(t, db)

	all, next, err := db.Alerts(storage.AlertQuery{})
	if err != nil || next != "" {
		t.Fatalf("Alerts() = %v, %q, %v", all, next, err)
	}
	ids := func(as []agent.Alert) string {
		var s []string
		for _, a := range as {
			s = append(s, a.ID+":"+string(a.State))
		}
		return strings.Join(s, ",")
	}
	if got, want := ids(all), "03-a:firing,02-b:firing,01-a:resolved"; got != want {
		t.Fatalf("Alerts() = %s; want %s", got, want)
	}
	if all[2].Gateway != "gw1" {
		t.Errorf("Gateway = %q; want stamped gw1", all[2].Gateway)
	}
	for _, tt := range []struct {
		q    storage.AlertQuery
		want string
	}{
		{storage.AlertQuery{Sensor: "a"}, "03-a:firing,01-a:resolved"},
		{storage.AlertQuery{State: "firing"}, "03-a:firing,02-b:firing"},
		{storage.AlertQuery{Since: t0.Add(time.Minute)}, "03-a:firing,02-b:firing"},
		{storage.AlertQuery{Sensor: "b", State: "resolved"}, ""},
	} {
		got, _, err := db.Alerts(tt.q)
		if err != nil || ids(got) != tt.want {
			t.Errorf("Alerts(%+v) = %s, %v; want %s", tt.q, ids(got), err, tt.want)
		}
	}
	// pagination
	var pages []string
	cursor := ""
	for range 5 {
		page, next, err := db.Alerts(storage.AlertQuery{Limit: 1, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, ids(page))
		if next == "" {
			break
		}
		cursor = next
	}
	if got := strings.Join(pages, "|"); got != "03-a:firing|02-b:firing|01-a:resolved" {
		t.Fatalf("pages = %s", got)
	}

	// every transition went to the outbox, in order
	es, err := db.OutboxPeek(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range es {
		var a agent.Alert
		if err := json.Unmarshal(e.Payload, &a); err != nil {
			t.Fatal(err)
		}
		if e.Lane != "alert" || a.Gateway != "gw1" || e.Sensor != a.Sensor {
			t.Errorf("outbox entry %+v: alert %+v", e, a)
		}
		seen = append(seen, a.ID+":"+string(a.State))
	}
	if got := strings.Join(seen, ","); got != "01-a:firing,02-b:firing,03-a:firing,01-a:resolved" {
		t.Fatalf("outbox = %s", got)
	}
}

func TestDB_Outbox(t *testing.T) {
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	path := filepath.Join(t.TempDir(), "edge.db")
	reg := prometheus.NewRegistry()
	db := mustOpen(t, path, storage.Options{Outbox: true, OutboxMaxAge: time.Hour, Now: clock, Registerer: reg})

	notify := db.OutboxNotify()
	if err := db.OutboxEnqueue("rollup", "a", []byte(`{"r":1}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-notify:
	case <-time.After(10 * time.Second):
		t.Fatal("OutboxNotify not signalled after OutboxEnqueue")
	}
	if err := db.OutboxEnqueue("bogus", "a", nil); err == nil {
		t.Fatal("OutboxEnqueue(bogus lane) = nil")
	}
	db.Write(nil, []agent.Alert{alert("01", "a", agent.AlertFiring, t0)})
	flush(t, db)
	if err := db.OutboxEnqueue("rollup", "b", []byte(`{"r":2}`)); err != nil {
		t.Fatal(err)
	}
	depth, bytes, oldest := db.OutboxStats()
	if depth != 3 || bytes <= 0 || !oldest.Equal(t0) {
		t.Fatalf("OutboxStats = %d, %d, %v", depth, bytes, oldest)
	}
	es, _ := db.OutboxPeek(0, 10)
	if len(es) != 3 || es[0].Seq >= es[1].Seq || es[1].Seq >= es[2].Seq || es[0].Lane != "rollup" || es[1].Lane != "alert" {
		t.Fatalf("OutboxPeek = %+v", es)
	}
	if got, _ := db.OutboxPeek(es[0].Seq, 1); len(got) != 1 || got[0].Seq != es[1].Seq {
		t.Fatalf("OutboxPeek(after first, 1) = %+v", got)
	}
	if err := db.OutboxDelete(es[2].Seq, 12345); err != nil {
		t.Fatal(err)
	}
	if d, _, _ := db.OutboxStats(); d != 2 {
		t.Fatalf("depth after delete = %d; want 2", d)
	}

	// age eviction takes the rollup entry, never the alert one
	mu.Lock()
	now = t0.Add(2 * time.Hour)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		db.Write([]agent.Result{res("x", now, 1)}, nil) // give the writer something to commit
		flush(t, db)
		if d, _, _ := db.OutboxStats(); d == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	es, _ = db.OutboxPeek(0, 10)
	if len(es) != 1 || es[0].Lane != "alert" {
		t.Fatalf("after eviction OutboxPeek = %+v; want only the alert", es)
	}
	if got := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "outbox_evicted"); got != 1 {
		t.Errorf("dropped_total{outbox_evicted} = %v; want 1", got)
	}

	// the outbox and its counters survive a reopen
	db.Close()
	db2 := mustOpen(t, path, storage.Options{})
	if d, _, _ := db2.OutboxStats(); d != 1 {
		t.Fatalf("after reopen depth = %d; want 1", d)
	}
}

func TestDB_State(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db := mustOpen(t, path, storage.Options{})
	if err := db.SaveState(map[string][]byte{"a": []byte("A1"), "b": []byte("B1")}); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveState(map[string][]byte{"a": []byte("A2")}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = mustOpen(t, path, storage.Options{})
	got := map[string]string{}
	if err := db.LoadState(func(s string, b []byte) error { got[s] = string(b); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[a:A2 b:B1]" {
		t.Fatalf("LoadState = %v", got)
	}
	stop := errors.New("stop")
	if err := db.LoadState(func(string, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("LoadState error = %v; want fn's", err)
	}
}

func TestDB_retentionByTime(t *testing.T) {
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{RawRetention: time.Hour, RollupRetention: 3 * time.Hour, MaxRawPerSensor: 50, Now: clock, Registerer: reg})
	var rs []agent.Result
	for i := range 200 { // 200 minutes, one reading each, for 2 sensors
		rs = append(rs, res("a", t0.Add(time.Duration(i)*time.Minute), float64(i)), res("b", t0.Add(time.Duration(i)*time.Minute), float64(i)))
	}
	db.Write(rs, nil)
	flush(t, db)
	mu.Lock()
	now = t0.Add(200 * time.Minute)
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		db.Write([]agent.Result{res("c", now, 1)}, nil)
		flush(t, db)
		a, _ := db.Readings("a", time.Time{}, time.Time{}, 0, false)
		ro, _ := db.Rollups("a", time.Time{}, time.Time{}, 0)
		if (len(a) == 50 && len(ro) == 180) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	a, _ := db.Readings("a", time.Time{}, time.Time{}, 0, false)
	// the cap (50) is tighter than the hour (60)
	if len(a) != 50 || a[0].Value != 150 {
		t.Fatalf("raw after retention: %d readings from %v; want 50 from 150", len(a), values(a[:1]))
	}
	ro, _ := db.Rollups("a", time.Time{}, time.Time{}, 0)
	if len(ro) != 180 || !ro[0].Start.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("rollups after retention: %d from %v; want 180 from minute 20", len(ro), ro[0].Start)
	}
	if got := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "raw_retention"); got != 300 {
		t.Errorf("dropped_total{raw_retention} = %v; want 300", got)
	}
}

// TestDB_retentionLateReadings: retention skips its pass over the sensors
// while the oldest reading kept (the floor) is newer than the cut; a late
// reading folded in below the floor must lower it, or the reading (and its
// rollup) would be kept past retention for good.
func TestDB_retentionLateReadings(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	clock := func() time.Time { return now }
	db := mustOpen(t, "", storage.Options{RawRetention: time.Hour, RollupRetention: 2 * time.Hour, MaxRawPerSensor: -1, Now: clock})
	var rs []agent.Result
	for i := range 30 { // within both retentions
		ts := now.Add(-time.Duration(i+1) * time.Minute)
		rs = append(rs, res("a", ts, float64(i)), res("b", ts, float64(i)))
	}
	db.Write(rs, nil)
	flush(t, db)
	// the first commit ran a pass; let an idle one (every second) see
	// the folded readings too
	time.Sleep(1500 * time.Millisecond)
	late := now.Add(-150 * time.Minute) // past both retentions
	db.Write([]agent.Result{res("a", late, -1)}, nil)
	flush(t, db)
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, _ := db.Readings("a", time.Time{}, now.Add(-time.Hour), 0, false)
		ro, _ := db.Rollups("a", time.Time{}, now.Add(-2*time.Hour), 0)
		if len(a) == 0 && len(ro) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late reading is still kept after 10 s: raw %v, rollups %d", values(a), len(ro))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a, _ := db.Readings("a", time.Time{}, time.Time{}, 0, false); len(a) != 30 {
		t.Fatalf("sensor a keeps %d readings; want the 30 within retention", len(a))
	}
}

// TestDB_retentionFlatFile writes several times the byte budget: the file
// stops growing once free pages are reused, and alerts are never trimmed.
func TestDB_retentionFlatFile(t *testing.T) {
	const budget = 2 << 20
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{MaxBytes: budget, RawRetention: 1000 * time.Hour, MaxRawPerSensor: -1, Registerer: reg, Logger: testLogger(t)})
	var alerts []agent.Alert
	const rounds, perRound = 8, 50_000
	var sizes []int64
	for round := range rounds { // 400k readings: about 9x the budget in raw data
		for i := range perRound / 1000 {
			rs := make([]agent.Result, 1000)
			for j := range rs {
				n := round*perRound + i*1000 + j
				// 20 sensors at 10 Hz: rollups stay small next to raw data
				rs[j] = res(fmt.Sprintf("s%02d", j%20), t0.Add(time.Duration(n)*5*time.Millisecond), float64(n))
			}
			var as []agent.Alert
			if i%10 == 0 {
				a := alert(fmt.Sprintf("r%02d-%03d", round, i), "s00", agent.AlertFiring, t0)
				as = append(as, a)
				alerts = append(alerts, a)
			}
			db.Write(rs, as)
		}
		flush(t, db)
		if err := db.Ready(); err != nil {
			t.Fatalf("round %d: Ready() = %v", round, err)
		}
		sizes = append(sizes, db.Size())
	}
	t.Logf("file sizes per round: %v", sizes)
	if trimmed := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "byte_budget"); trimmed == 0 {
		t.Fatalf("nothing trimmed for the byte budget; sizes %v", sizes)
	}
	if last := sizes[len(sizes)-1]; last > 2*budget {
		t.Errorf("file grew to %d after %d rounds (budget %d): sizes %v", last, rounds, budget, sizes)
	}
	// bbolt grows the file in doubling steps; when the journal's folds land
	// decides whether the last step comes in round 4 or 5, so flat means:
	// no growth over the last three rounds (after 5x the budget written).
	if tail := sizes[rounds-3:]; tail[0] != tail[2] {
		t.Errorf("file still growing over the last rounds: sizes %v", sizes)
	}
	got, _, err := db.Alerts(storage.AlertQuery{Limit: 1000})
	if err != nil || len(got) != len(alerts) {
		t.Fatalf("alerts after trimming: %d, %v; want all %d", len(got), err, len(alerts))
	}
	// the newest readings survive, the oldest went first
	rs, _ := db.Readings("s00", time.Time{}, time.Time{}, 0, false)
	if len(rs) == 0 || rs[len(rs)-1].Value != rounds*perRound-20 || rs[0].Value == 0 {
		t.Fatalf("s00 after trimming: %d readings", len(rs))
	}
	t.Logf("s00 keeps %d readings, %v..%v", len(rs), rs[0].Value, rs[len(rs)-1].Value)
	if commits, failures := counter(t, reg, "edgeagent_storage_commits_total"), counter(t, reg, "edgeagent_storage_commit_failures_total"); failures != 0 {
		t.Errorf("%v of %v commits failed", failures, commits)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("STORAGE_TEST_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestOpen_locked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	mustOpen(t, path, storage.Options{})
	start := time.Now()
	_, err := storage.Open(path, storage.Options{LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "database is locked by another process") {
		t.Fatalf("second Open = %v; want database is locked by another process", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("second Open took %v", time.Since(start))
	}
}

func TestOpen_corrupt(t *testing.T) {
	for _, tt := range []struct {
		name    string
		content []byte
	}{
		{"text", []byte(strings.Repeat("this is not a database\n", 1000))},
		{"zeros", make([]byte, 64<<10)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edge.db")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := storage.Open(path, storage.Options{})
			if err == nil || !strings.Contains(err.Error(), "--reset-db") {
				t.Fatalf("Open(%s) = %v; want a message naming --reset-db", tt.name, err)
			}
			moved, err := storage.ResetFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(moved); err != nil || len(b) != len(tt.content) {
				t.Fatalf("moved file %s: %d bytes, %v", moved, len(b), err)
			}
			db := mustOpen(t, path, storage.Options{}) // a fresh file
			if err := db.Ready(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if moved, err := storage.ResetFile(filepath.Join(t.TempDir(), "missing.db")); moved != "" || err != nil {
		t.Fatalf("ResetFile(missing) = %q, %v", moved, err)
	}
}

func setSchema(t *testing.T, path string, v uint32, extra func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		if err := m.Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, v)); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpen_schema(t *testing.T) {
	t.Run("newer", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "edge.db")
		setSchema(t, path, 99, nil)
		_, err := storage.Open(path, storage.Options{})
		if err == nil || !strings.Contains(err.Error(), "schema version 99 is newer") {
			t.Fatalf("Open(schema 99) = %v; want refused as newer", err)
		}
	})
	t.Run("older", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "edge.db")
		setSchema(t, path, 0, nil)
		db := mustOpen(t, path, storage.Options{})
		db.Write([]agent.Result{res("a", t0, 1)}, nil)
		flush(t, db)
		db.Close()
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer bdb.Close()
		_ = bdb.View(func(tx *bolt.Tx) error {
			// schema 2 added the journal bucket, 3 runs of readings, 4 folds
			// in parts, 5 folds that delete their journal keys in steps, 6
			// reading counts in the sensor buckets
			if v := tx.Bucket([]byte("meta")).Get([]byte("schema")); binary.BigEndian.Uint32(v) != 6 {
				t.Errorf("schema after migration = %x; want 6", v)
			}
			return nil
		})
	})
	t.Run("foreign", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "edge.db")
		bdb, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("someone-else")); return err })
		bdb.Close()
		if _, err := storage.Open(path, storage.Options{}); err == nil || !strings.Contains(err.Error(), "--reset-db") {
			t.Fatalf("Open(foreign bbolt file) = %v; want refused with --reset-db", err)
		}
	})
}

// TestDB_readingCounts: the reading count of each sensor, which the
// max_raw_per_sensor cap needs, is kept in the file (the bucket's sequence,
// count+1), so a start does not read every page to count; a bucket of an
// older file, without one, is counted once and then kept.
func TestDB_readingCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	counts := func() map[string]uint64 { // sensor -> stored sequence
		t.Helper()
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer bdb.Close()
		got := map[string]uint64{}
		_ = bdb.View(func(tx *bolt.Tx) error {
			rb := tx.Bucket([]byte("readings"))
			return rb.ForEach(func(k, _ []byte) error {
				got[string(k)] = rb.Bucket(k).Sequence()
				return nil
			})
		})
		return got
	}
	capped := func(db *storage.DB, sensor string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			db.Write([]agent.Result{res("tick", time.Now(), 1)}, nil) // keeps commits (and retention) going
			flush(t, db)
			got, err := db.Readings(sensor, time.Time{}, time.Time{}, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("sensor %s: %d readings; want %d (max_raw_per_sensor)", sensor, len(got), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	write := func(db *storage.DB, sensor string, from, n int) {
		var rs []agent.Result
		for i := range n {
			rs = append(rs, res(sensor, t0.Add(time.Duration(from+i)*time.Second), float64(from+i)))
		}
		db.Write(rs, nil)
		flush(t, db)
	}

	db, err := storage.Open(path, storage.Options{MaxRawPerSensor: 50})
	if err != nil {
		t.Fatal(err)
	}
	write(db, "a", 0, 80)
	write(db, "b", 0, 30)
	write(db, "c", 0, 10)
	capped(db, "a", 50)
	db.Close()
	if got := counts(); got["a"] != 51 || got["b"] != 31 || got["c"] != 11 {
		t.Fatalf("stored counts+1 = a %d, b %d, c %d; want 51, 31, 11", got["a"], got["b"], got["c"])
	}

	// a schema 5 file: no counts
	setSchema(t, path, 5, func(tx *bolt.Tx) error {
		rb := tx.Bucket([]byte("readings"))
		for _, s := range []string{"a", "b", "c"} {
			if err := rb.Bucket([]byte(s)).SetSequence(0); err != nil {
				return err
			}
		}
		return nil
	})
	db, err = storage.Open(path, storage.Options{MaxRawPerSensor: 20})
	if err != nil {
		t.Fatal(err)
	}
	capped(db, "a", 20)
	capped(db, "b", 20)
	write(db, "b", 30, 15) // 35 readings: over the cap again, counted from the sequence
	capped(db, "b", 20)
	db.Close()
	if got := counts(); got["a"] != 21 || got["b"] != 21 || got["c"] != 11 {
		t.Fatalf("stored counts+1 = a %d, b %d, c %d; want 21, 21, 11", got["a"], got["b"], got["c"])
	}

	// nothing over the cap and nothing written: the retention step commits
	// the count it made, or every start would count c again
	setSchema(t, path, 5, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("readings")).Bucket([]byte("c")).SetSequence(0)
	})
	reg := prometheus.NewRegistry()
	db, err = storage.Open(path, storage.Options{MaxRawPerSensor: 1000, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); counter(t, reg, "edgeagent_storage_commits_total") < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no commit of the count of c within 10 s")
		}
	}
	db.Close()
	if got := counts(); got["c"] != 11 {
		t.Fatalf("stored count+1 of c = %d; want 11", got["c"])
	}
	checkFile(t, path)
}

// TestDB_closeSavesFreelist: Close writes bbolt's free page list, so the
// next Open reads it instead of walking every page of the file; the first
// commit after that drops it again (NoFreelistSync), so a crash still
// rebuilds the list; and pages allocated from a saved list are sound.
func TestDB_closeSavesFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db, err := storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fill := func(from int) {
		for i := range 5 { // every commit frees pages: copy on write, and folds delete journal keys
			var rs []agent.Result
			for s := range 40 {
				for j := range 100 {
					n := from + i*100 + j
					rs = append(rs, res("s"+strconv.Itoa(s), t0.Add(time.Duration(n)*time.Second), float64(n)))
				}
			}
			db.Write(rs, nil)
			flush(t, db)
		}
	}
	fill(0)
	if savedFreelist(t, path) {
		t.Fatal("an open file names a free page list; want none (NoFreelistSync)")
	}
	db.Close()
	if !savedFreelist(t, path) {
		t.Fatal("a closed file names no free page list; want the one Close saved")
	}
	if db, err = storage.Open(path, storage.Options{}); err != nil {
		t.Fatal(err)
	}
	fill(1000)
	if savedFreelist(t, path) {
		t.Fatal("after a commit the file still names the saved free page list; a crash would trust a stale one")
	}
	db.Close()
	checkFile(t, path)
	if db, err = storage.Open(path, storage.Options{}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.Readings("s7", time.Time{}, time.Time{}, 0, false); err != nil || len(got) != 1000 || got[999].Value != 1499 {
		t.Fatalf("s7 after reopening: %d readings, %v; want 1000, the last 1499", len(got), err)
	}
}

// savedFreelist reports whether the file's current meta page (of the two,
// the one with the higher transaction id) names a free page list. The
// layout is bbolt's: a 16-byte page header, then magic, version, page size,
// flags (4 bytes each), the root bucket (16), the freelist page id (8),
// the high water mark (8) and the transaction id (8), in host byte order.
func savedFreelist(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.NativeEndian.Uint32(b[16+8:]))
	var freelist, txid uint64
	for _, at := range []int{0, pageSize} {
		m := b[at+16:]
		if id := binary.NativeEndian.Uint64(m[48:]); id >= txid {
			freelist, txid = binary.NativeEndian.Uint64(m[32:]), id
		}
	}
	return freelist != math.MaxUint64 // bbolt's PgidNoFreelist
}

// checkFile runs bbolt's consistency check (what `bbolt check` does).
func checkFile(t *testing.T, path string) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("bolt.Open(%s): %v", path, err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("tx.Check: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDB_Write_invalid: bad input is rejected alone and never poisons the
// batch it arrived in (a failing batch would be retried forever).
func TestDB_Write_invalid(t *testing.T) {
	reg := prometheus.NewRegistry()
	db := mustOpen(t, "", storage.Options{Registerer: reg})
	bad := agent.NewCommit(1)
	r := res("", t0, 1)
	r.Commit = bad
	good := agent.NewCommit(1)
	g := res("a", t0, 2)
	g.Commit = good
	nan := alert("nan", "a", agent.AlertFiring, t0)
	nan.Baseline.StdDev = math.NaN()
	db.Write([]agent.Result{r, g}, []agent.Alert{nan, alert("", "a", agent.AlertFiring, t0), alert("ok", "a", agent.AlertFiring, t0)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bad.Wait(ctx); !errors.Is(err, agent.ErrInvalidReading) {
		t.Errorf("empty sensor: Commit.Wait = %v; want ErrInvalidReading", err)
	}
	if err := good.Wait(ctx); err != nil {
		t.Errorf("good reading next to bad input: Commit.Wait = %v", err)
	}
	got, _, _ := db.Alerts(storage.AlertQuery{})
	if len(got) != 1 || got[0].ID != "ok" {
		t.Errorf("Alerts = %+v; want only ok", got)
	}
	if n := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "invalid"); n != 3 {
		t.Errorf("dropped_total{invalid} = %v; want 3", n)
	}
	if err := db.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
}
