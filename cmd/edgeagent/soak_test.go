package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent/loadgen"
)

// soakSample is one row of the soak CSV.
type soakSample struct {
	At         time.Duration
	RSS, Anon  int64
	Goroutines float64
	FDs        int
	DBBytes    float64
	Outbox     float64
	Processed  float64
	Alerts     float64
	Lost       float64 // storage drops that lose data: commit_failed, closed, alert_overflow
	Trimmed    float64 // retention by design: byte_budget, raw_retention
}

// TestSoak runs the built agent as a child process under 5,000 readings/s
// over 5,000 sensors (QoS 0, simulated anomalies so alerts fire) and samples
// it every 10 s into a CSV.
//
// The bounds: anonymous RSS (Go heap, stacks) peaks below 128 MiB;
// goroutines grow by at most 20 and open files by at most 10 from the start
// of the middle third; on runs of 10 min or more (the database has reached
// its byte budget), the anonymous RSS peak of the last third is at most 10%
// + 8 MiB above that of the middle third; the database file stays within
// storage.max_bytes (128 MiB here) + 32 MiB; no reading is lost (processed +
// rejected == published) and storage loses none (dropped_total for
// commit_failed, closed, alert_overflow stays 0; trimming the oldest raw
// readings for the byte budget is retention, reported as trimmed).
//
// SOAK_DURATION sets the length (default 2m, `make soak` uses 30m) and
// SOAK_CSV the CSV path (default in the test's temp dir). Skipped with -short.
// The uplink forwards alerts to a local Mosquitto that is stopped for a
// sixth of every quarter of the run; after the run the outbox must drain to
// empty within 30 s.
// soakRules: the default detectors plus a fast-learning z-score, so that
// injected spikes raise alerts within a short run (auto waits for a few
// hundred readings of history before it scores).
const soakRules = `rules:
  - name: soak
    detectors: [{type: auto}, {type: zscore, warmup: 20}, {type: flatline, duration: 1m, min_readings: 10}, {type: silence}]
`

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not with -short")
	}
	dur := 2 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		dur = d
	}
	dir := t.TempDir()
	csvPath := os.Getenv("SOAK_CSV")
	if csvPath == "" {
		csvPath = filepath.Join(dir, "soak.csv")
	}
	mosq := startMosquittoProc(t, dir)
	agent := startChild(t, dir, childConfig(filepath.Join(dir, "data"),
		fmt.Sprintf("storage: {max_bytes: 128MB}\nupstream: {url: \"tcp://127.0.0.1:%d\", backoff_max: 5s}\n", mosq.Port)+soakRules))
	// Flap the uplink: down for a sixth of each period, 4 periods per run
	// (30 s every 3 min in the 30 min soak; 5 s every 30 s in 2 min).
	flapEvery := dur / 4
	flapStop := make(chan struct{})
	flapDone := make(chan struct{})
	go func() {
		defer close(flapDone)
		for {
			select {
			case <-flapStop:
				return
			case <-time.After(flapEvery - flapEvery/6):
			}
			mosq.Stop()
			select {
			case <-flapStop:
				mosq.Start()
				return
			case <-time.After(flapEvery / 6):
			}
			mosq.Start()
		}
	}()
	metricsURL := "http://" + agent.HTTP + "/metrics"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type runResult struct {
		res loadgen.Result
		err error
	}
	loadDone := make(chan runResult, 1)
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Options{
			Broker: "tcp://" + agent.MQTT, Clients: 50, Sensors: 5000, Rate: 5000, Duration: dur,
			AnomalyRate: 1.0 / 2000, LatencyEvery: 1 << 30,
		})
		loadDone <- runResult{res, err}
	}()

	csv, err := os.Create(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	defer csv.Close()
	fmt.Fprintln(csv, "seconds,rss_bytes,rss_anon_bytes,goroutines,open_files,db_bytes,outbox_entries,processed,alerts,storage_lost,storage_trimmed")
	var samples []soakSample
	sample := func(at time.Duration) {
		p, err := loadgen.ReadProc(agent.Pid())
		if err != nil {
			t.Errorf("agent process: %v", err)
			return
		}
		m, err := loadgen.Scrape(ctx, metricsURL)
		if err != nil {
			t.Errorf("agent metrics: %v", err)
			return
		}
		s := soakSample{At: at, RSS: p.RSS, Anon: p.RSSAnon, FDs: p.FDs,
			Goroutines: m.Sum("go_goroutines"), DBBytes: m.Sum("edgeagent_storage_file_bytes"),
			Outbox: m.Sum("edgeagent_outbox_depth"), Processed: m.Sum("edgeagent_readings_processed_total"),
			Alerts: m.Sum("edgeagent_alerts_total")}
		for _, r := range []string{"commit_failed", "closed", "alert_overflow"} {
			s.Lost += m.Sum(`edgeagent_storage_dropped_total{reason="` + r + `"}`)
		}
		for _, r := range []string{"byte_budget", "raw_retention"} {
			s.Trimmed += m.Sum(`edgeagent_storage_dropped_total{reason="` + r + `"}`)
		}
		samples = append(samples, s)
		fmt.Fprintf(csv, "%.0f,%d,%d,%.0f,%d,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f\n", at.Seconds(), s.RSS, s.Anon, s.Goroutines, s.FDs,
			s.DBBytes, s.Outbox, s.Processed, s.Alerts, s.Lost, s.Trimmed)
	}
	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var rr runResult
wait:
	for {
		select {
		case rr = <-loadDone:
			break wait
		case <-tick.C:
			sample(time.Since(start))
		}
	}
	close(flapStop)
	<-flapDone
	if rr.err != nil {
		t.Fatal(rr.err)
	}
	// Let the agent finish the queue, then take the final sample.
	var processed, rejected float64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m, err := loadgen.Scrape(ctx, metricsURL)
		if err == nil {
			processed, rejected = m.Sum("edgeagent_readings_processed_total"), m.Sum("edgeagent_readings_rejected_total")
			if int64(processed+rejected) >= rr.res.Published {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// With the uplink up again, the outbox drains to empty and every alert
	// transition has been forwarded. The counts are read in one scrape; a
	// transition is counted when the engine emits it and enters the outbox
	// at the next commit, so an empty outbox alone can be a moment early.
	var outbox, forwarded, transitions float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if m, err := loadgen.Scrape(ctx, metricsURL); err == nil {
			outbox, forwarded = m.Sum("edgeagent_outbox_depth"), m.Sum("edgeagent_upstream_published_total")
			transitions = m.Sum("edgeagent_alerts_total")
			if outbox == 0 && forwarded >= transitions {
				break
			}
		}
	}
	sample(time.Since(start))
	agent.Stop(t)
	var peakOutbox float64
	for _, s := range samples {
		peakOutbox = max(peakOutbox, s.Outbox)
	}
	t.Logf("uplink flapped every %v: outbox peaked at %.0f entries, %.0f at the end; %.0f alert messages forwarded for %.0f alert transitions",
		flapEvery, peakOutbox, outbox, forwarded, transitions)
	if outbox != 0 {
		t.Errorf("outbox holds %.0f entries 30 s after the uplink came back", outbox)
	}
	if forwarded != transitions {
		t.Errorf("%.0f alert messages forwarded for %.0f alert transitions", forwarded, transitions)
	}

	t.Logf("published %d in %v (%.0f/s), processed %.0f, rejected %.0f; CSV %s", rr.res.Published,
		rr.res.Elapsed.Round(time.Second), rr.res.Rate(), processed, rejected, csvPath)
	if int64(processed+rejected) != rr.res.Published || rr.res.Failed != 0 {
		t.Errorf("lost readings: published %d (failed %d), processed %.0f + rejected %.0f", rr.res.Published, rr.res.Failed, processed, rejected)
	}
	if len(samples) < 5 {
		t.Fatalf("only %d samples", len(samples))
	}
	// Growth is judged over the samples taken under load; the last one is
	// taken after the generator disconnected.
	during := samples[:len(samples)-1]
	third := len(during) / 3
	peak := func(ss []soakSample) (anon int64, g float64, fds int) {
		for _, s := range ss {
			anon, g, fds = max(anon, s.Anon), max(g, s.Goroutines), max(fds, s.FDs)
		}
		return
	}
	base := during[third]
	midAnon, midG, midFDs := peak(during[third : 2*third])
	endAnon, endG, endFDs := peak(during[2*third:])
	last := samples[len(samples)-1]
	t.Logf("peaks, middle third: anon RSS %.1f MB, goroutines %.0f, files %d; last third: anon %.1f MB, goroutines %.0f, files %d; end: RSS %.1f MB, db %.1f MB, alerts %.0f",
		mb(midAnon), midG, midFDs, mb(endAnon), endG, endFDs, mb(last.RSS), last.DBBytes/(1<<20), last.Alerts)
	if endAnon > 128<<20 {
		t.Errorf("anonymous RSS peaked at %.1f MB; bound 128 MB", mb(endAnon))
	}
	if endG > base.Goroutines+20 || endFDs > base.FDs+10 {
		t.Errorf("goroutines %.0f -> %.0f, open files %d -> %d under the same load", base.Goroutines, endG, base.FDs, endFDs)
	}
	// Until the database reaches its byte budget (~7 min here) bbolt's
	// memory grows with the file, so flatness is judged only on long runs.
	if dur >= 10*time.Minute {
		if limit := midAnon + midAnon/10 + 8<<20; endAnon > limit {
			t.Errorf("anonymous RSS still growing: peak %.1f MB in the middle third, %.1f MB in the last (bound %.1f MB)", mb(midAnon), mb(endAnon), mb(limit))
		}
	}
	if last.DBBytes > 160<<20 {
		t.Errorf("database file %.1f MB exceeds max_bytes 128 MB + 32 MB", last.DBBytes/(1<<20))
	}
	if last.Lost != 0 {
		t.Errorf("storage lost %.0f readings or alerts (edgeagent_storage_dropped_total, reasons commit_failed, closed, alert_overflow)", last.Lost)
	}
	if last.Alerts == 0 {
		t.Errorf("no alert fired during the soak: the anomalies did not reach the engine")
	}
}
