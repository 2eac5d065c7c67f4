package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/loadgen"
	"github.com/edgeagent/edgeagent/broker"
)

// startBenchApp is startApp for tests and benchmarks alike.
func startBenchApp(tb testing.TB, yaml string) *App {
	tb.Helper()
	base := fmt.Sprintf("gateway_id: bench-gw\ndata_dir: %s\nmqtt: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"127.0.0.1:0\"}\n",
		filepath.Join(tb.TempDir(), "data"))
	cfg, err := config.Parse([]byte(base + yaml))
	if err != nil {
		tb.Fatal(err)
	}
	app := NewApp(cfg, AppOptions{})
	if err := app.Start(context.Background()); err != nil {
		app.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := app.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return app
}

// The generator's own count must equal what a counting broker hook saw, for
// an exact number of publishes split unevenly over the clients.
func TestLoadgen_countsExactlyWhatItPublished(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			var n atomic.Int64
			b, err := broker.New(broker.Options{Listen: "127.0.0.1:0", AllowAnonymous: true,
				Handler: func(context.Context, broker.Message) (broker.Pending, error) { n.Add(1); return nil, nil }})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			const count = 10007
			res, err := loadgen.Run(context.Background(), loadgen.Options{
				Broker: "tcp://" + b.Addr("tcp").String(), Clients: 3, Sensors: 50, Count: count, QoS: qos})
			if err != nil {
				t.Fatal(err)
			}
			if res.Published != count || res.Failed != 0 {
				t.Fatalf("generator: published %d, failed %d; want %d, 0", res.Published, res.Failed, count)
			}
			eventually(t, "the broker to see every publish", func() bool { return n.Load() == count })
			if qos == 1 && len(res.Latency) != count {
				t.Errorf("latency samples = %d; want one per QoS 1 publish (%d)", len(res.Latency), count)
			}
			if qos == 0 && len(res.Latency) != 0 {
				t.Errorf("latency samples at QoS 0 = %d; want none (there is no PUBACK)", len(res.Latency))
			}
			time.Sleep(50 * time.Millisecond)
			if got := n.Load(); got != count {
				t.Errorf("broker saw %d; want exactly %d", got, count)
			}
		})
	}
}

var resultLine = regexp.MustCompile(`(?m)^RESULT mode=agent .*$`)

func resultField(t *testing.T, line, key string) int64 {
	t.Helper()
	m := regexp.MustCompile(`\b` + key + `=([0-9.]+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no %s in %q", key, line)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return int64(v)
}

// `edgeagent bench` against a whole agent: its processed count, read from
// /metrics, equals the known number of published readings, with the
// agent's own pid found from the metrics port.
func TestBench_agentCountsMatchPublished(t *testing.T) {
	app := startBenchApp(t, "")
	var out, errOut bytes.Buffer
	err := runBench(context.Background(), []string{
		"--broker", "tcp://" + app.MQTTAddr(), "--metrics", "http://" + app.HTTPAddr() + "/metrics",
		"--clients", "4", "--sensors", "200", "--count", "5003", "--qos", "1", "--compare-bare", "--bare-bin", buildNativeAgent(t),
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	line := resultLine.FindString(out.String())
	if line == "" {
		t.Fatalf("no agent RESULT line in:\n%s", out.String())
	}
	for key, want := range map[string]int64{"published": 5003, "processed_n": 5003, "rejected": 0, "dropped": 0, "lost": 0} {
		if got := resultField(t, line, key); got != want {
			t.Errorf("%s = %d; want %d\n%s", key, got, want, out.String())
		}
	}
	if resultField(t, line, "peak_rss_mb") <= 0 {
		t.Errorf("peak RSS not measured (the agent is this test process)\n%s", out.String())
	}
	if s := resultField(t, line, "steal_pct"); s < 0 || s > 100 || !strings.Contains(out.String(), "host steal") {
		t.Errorf("host steal not measured (steal_pct %d)\n%s", s, out.String())
	}
	if !regexp.MustCompile(`(?m)^RATIO agent/bare processed=[0-9.]+`).MatchString(out.String()) {
		t.Errorf("no ratio line:\n%s", out.String())
	}
}

// The baseline, a subscriber counting messages: at a rate one
// client can take, it counts every published reading.
func TestBench_bareSubscriberCountsPublished(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runBench(context.Background(), []string{
		"--bare", "--baseline", "subscriber", "--clients", "4", "--sensors", "100", "--count", "3000", "--rate", "3000",
		"--bare-bin", buildNativeAgent(t),
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	line := regexp.MustCompile(`(?m)^RESULT mode=bare-subscriber .*$`).FindString(out.String())
	if line == "" {
		t.Fatalf("no bare-subscriber RESULT line in:\n%s", out.String())
	}
	for key, want := range map[string]int64{"published": 3000, "processed_n": 3000, "lost": 0} {
		if got := resultField(t, line, key); got != want {
			t.Errorf("%s = %d; want %d\n%s", key, got, want, out.String())
		}
	}
}

func TestBench_retentionIsNotADrop(t *testing.T) {
	before := loadgen.Samples{
		`edgeagent_storage_dropped_total{reason="byte_budget"}`:   100,
		`edgeagent_storage_dropped_total{reason="commit_failed"}`: 1,
		"edgeagent_mqtt_messages_dropped_total":                   2,
	}
	after := loadgen.Samples{
		`edgeagent_storage_dropped_total{reason="byte_budget"}`:   600,
		`edgeagent_storage_dropped_total{reason="raw_retention"}`: 40,
		`edgeagent_storage_dropped_total{reason="commit_failed"}`: 4,
		`edgeagent_storage_dropped_total{reason="closed"}`:        5,
		"edgeagent_mqtt_messages_dropped_total":                   9,
	}
	dropped, trimmed := droppedAndTrimmed(before, after)
	if dropped != 3+5+7 || trimmed != 500+40 {
		t.Fatalf("dropped %d, trimmed %d; want 15 and 540", dropped, trimmed)
	}
}

// BenchmarkApp_endToEnd: 8 paho clients publish 1000 sensors' JSON readings
// over loopback into a whole agent (broker, ingest, default detectors,
// bbolt) in this process; the load generator shares the CPU. Use it with
// -cpuprofile / -memprofile to find what bounds the agent.
func BenchmarkApp_endToEnd(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			app := startBenchApp(b, "")
			clients := 8
			if qos == 1 {
				clients = 200 // one commit wait per message per connection: see docs/performance.md
			}
			b.ResetTimer()
			res, err := loadgen.Run(context.Background(), loadgen.Options{
				Broker: "tcp://" + app.MQTTAddr(), Clients: clients, Sensors: 1000, Count: int64(b.N), QoS: qos,
				Inflight: 8, LatencyEvery: 16,
			})
			if err != nil {
				b.Fatal(err)
			}
			want := uint64(res.Published)
			for app.pipeline.Stats().Processed < want {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
			if len(res.Latency) > 0 {
				b.ReportMetric(float64(loadgen.Quantile(res.Latency, 0.99).Microseconds()), "p99-µs")
			}
		})
	}
}
