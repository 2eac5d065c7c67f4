package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/loadgen"
	"github.com/edgeagent/edgeagent/agent/sim"
)

func scrape(t *testing.T, app *App) loadgen.Samples {
	t.Helper()
	s, err := loadgen.Scrape(context.Background(), "http://"+app.HTTPAddr()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Figure held: 16 clients each interleave 100 good QoS 1 readings with 200
// bad payloads (truncated JSON, strings, missing value, binary junk, 5 KB
// over max_payload) while 4 more clients send 100 KiB packets (over
// mqtt.max_packet). Every good reading is processed (1,600), every bad
// payload is counted as rejected (3,200) and acknowledged, the oversized
// senders are disconnected without a count, and the agent keeps serving.
func TestFault_garbageStormAndOversizedPackets(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	app := startBenchApp(t, "")
	garbage := []string{`{"value": `, `"abc"`, `{"temp": 1}`, "\x00\x01\x02\xff", `{"value": "NaN"}`, strings.Repeat("x", 5000)}
	const mixed, good, bad = 16, 100, 200
	var wg sync.WaitGroup
	errs := make(chan error, mixed+4)
	for c := range mixed {
		wg.Go(func() {
			cl := connect(t, app.MQTTAddr(), fmt.Sprintf("storm-%d", c))
			for i := range good + bad {
				payload := garbage[i%len(garbage)]
				if i%3 == 0 {
					payload = fmt.Sprintf(`{"value": %d.25, "ts": %d}`, i, time.Now().UnixMilli())
				}
				tok := cl.Publish(fmt.Sprintf("sensors/storm-%d-%d/temperature", c, i%5), 1, false, payload)
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("client %d publish %d: not acknowledged: %v", c, i, tok.Error())
					return
				}
			}
		})
	}
	for c := range 4 {
		wg.Go(func() {
			cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + app.MQTTAddr()).
				SetClientID(fmt.Sprintf("huge-%d", c)).SetAutoReconnect(false))
			if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("huge %d connect: %v", c, tok.Error())
				return
			}
			defer cl.Disconnect(0)
			for range 3 {
				cl.Publish("sensors/huge/temperature", 1, false, strings.Repeat("9", 100<<10)).WaitTimeout(2 * time.Second)
			}
			deadline := time.Now().Add(5 * time.Second)
			for cl.IsConnectionOpen() && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if cl.IsConnectionOpen() {
				errs <- fmt.Errorf("huge %d: still connected after sending 100 KiB packets", c)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "every good reading", func() bool {
		return scrape(t, app).Sum("edgeagent_readings_processed_total") == mixed*good
	})
	s := scrape(t, app)
	if got := s.Sum("edgeagent_readings_rejected_total"); got != mixed*bad {
		t.Errorf("rejected = %v; want %d (one per bad payload)", got, mixed*bad)
	}
	if got := s.Sum("edgeagent_readings_received_total"); got != mixed*good {
		t.Errorf("received = %v; want %d", got, mixed*good)
	}
	resp, err := http.Get("http://" + app.HTTPAddr() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz after the storm: %v %v", resp, err)
	}
	resp.Body.Close()
	after := connect(t, app.MQTTAddr(), "after-storm")
	after.Publish("sensors/after/temperature", 1, false, "21.5").WaitTimeout(5 * time.Second)
	eventually(t, "a reading after the storm", func() bool {
		return scrape(t, app).Sum("edgeagent_readings_processed_total") == mixed*good+1
	})
}

// Figure held: 100,000 distinct sensor ids published once each; with
// ingest.max_sensors 10,000 exactly 10,000 are admitted and processed, the
// other 90,000 are counted as too_many_sensors, and the heap grows by less
// than 48 MiB (measured ~20 MiB: engine state ~1.5 KB per sensor).
func TestFault_100kDistinctSensorIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	app := startBenchApp(t, "ingest: {max_sensors: 10000}\n")
	var m0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	const n = 100000
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		Broker: "tcp://" + app.MQTTAddr(), Clients: 20, Sensors: n, Count: n, QoS: 1, Inflight: 32, LatencyEvery: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != n {
		t.Fatalf("published %d (failed %d); want %d", res.Published, res.Failed, n)
	}
	s := scrape(t, app)
	if got := s.Sum("edgeagent_sensors"); got != 10000 {
		t.Errorf("edgeagent_sensors = %v; want the cap, 10000", got)
	}
	if got := s.Sum(`edgeagent_readings_rejected_total{reason="too_many_sensors"}`); got != n-10000 {
		t.Errorf("too_many_sensors = %v; want %d", got, n-10000)
	}
	if got := s.Sum("edgeagent_readings_processed_total"); got != 10000 {
		t.Errorf("processed = %v; want 10000", got)
	}
	var m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m1)
	growth := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("heap after 100,000 ids: +%.1f MiB", float64(growth)/(1<<20))
	if growth > 48<<20 {
		t.Errorf("heap grew by %.1f MiB; want < 48 MiB with the cap at 10,000 sensors", float64(growth)/(1<<20))
	}
}

// Figure held: a client that subscribes to every sensor topic and never
// reads its socket does not slow ingest: 100,000 QoS 1 readings from 50
// publishers are all acknowledged and processed, and the broker drops what
// the stuck subscriber cannot take (counted), so its queue stays bounded.
func TestFault_subscriberThatNeverReads(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	app := startBenchApp(t, "")
	conn, err := net.Dial("tcp", app.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	id := "never-reads"
	connectPkt := append([]byte{0x10, byte(10 + 2 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
	topic := "sensors/#"
	subPkt := append([]byte{0x82, byte(2 + 2 + len(topic) + 1), 0, 1, 0, byte(len(topic))}, topic...)
	subPkt = append(subPkt, 0)
	if _, err := conn.Write(append(connectPkt, subPkt...)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stuck subscriber to connect", func() bool {
		return scrape(t, app).Sum("edgeagent_mqtt_clients_connected") == 1
	})
	// Enough readings to overflow the stuck subscriber's socket buffers and
	// its bounded queue (~6 MB of fan-out), however fast storage commits.
	const n = 100000
	res, err := loadgen.Run(context.Background(), loadgen.Options{
		Broker: "tcp://" + app.MQTTAddr(), Clients: 50, Sensors: 1000, Count: n, QoS: 1, Inflight: 8, LatencyEvery: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != n || res.Failed != 0 {
		t.Fatalf("published %d, failed %d; want %d, 0", res.Published, res.Failed, n)
	}
	eventually(t, "drops for the stuck subscriber", func() bool {
		return scrape(t, app).Sum("edgeagent_mqtt_messages_dropped_total") > 0
	})
	s := scrape(t, app)
	if got := s.Sum("edgeagent_readings_processed_total"); got != n {
		t.Errorf("processed = %v; want %d", got, n)
	}
	dropped := s.Sum("edgeagent_mqtt_messages_dropped_total")
	t.Logf("%d readings in %v; %v messages dropped for the stuck subscriber", n, res.Elapsed.Round(time.Millisecond), dropped)
	if dropped == 0 {
		t.Errorf("no message dropped for a subscriber that never reads: its queue is unbounded or it was not stuck")
	}
}

// Figure held: SIGKILL of the agent binary under QoS 1 + QoS 0 load, then a
// restart on the same data: the database opens (the restarted binary is
// ready), every QoS 1 reading that was acknowledged before the kill is
// stored, and every reading the agent had processed 1 s before the kill
// (commit_interval 100 ms + commit time) is stored too.
func TestFault_sigkillDuringLoadThenRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgText := childConfig(data, "")
	agent := startChild(t, dir, cfgText)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var acked, qos0 loadgen.Result
	wg.Go(func() {
		acked, _ = loadgen.Run(ctx, loadgen.Options{Broker: "tcp://" + agent.MQTT, Clients: 50, Sensors: 500,
			QoS: 1, Inflight: 4, Duration: time.Minute, ClientID: "kill-q1", LatencyEvery: 1 << 30})
	})
	wg.Go(func() {
		qos0, _ = loadgen.Run(ctx, loadgen.Options{Broker: "tcp://" + agent.MQTT, Clients: 4, Sensors: 500, SensorBase: 500,
			Rate: 5000, Duration: time.Minute, ClientID: "kill-q0", LatencyEvery: 1 << 30})
	})
	time.Sleep(3 * time.Second)
	m, err := loadgen.Scrape(ctx, "http://"+agent.HTTP+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	processedBefore := m.Sum("edgeagent_readings_processed_total")
	time.Sleep(time.Second)
	agent.Kill()
	cancel()
	wg.Wait()
	t.Logf("killed: %d QoS 1 acknowledged, %d QoS 0 sent; %.0f processed 1 s before the kill", acked.Published, qos0.Published, processedBefore)
	if acked.Published == 0 || processedBefore == 0 {
		t.Fatal("no load reached the agent before the kill")
	}

	// The binary restarts on the same file and becomes ready.
	again := startChild(t, dir, cfgText)
	resp, err := http.Get("http://" + again.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz after restart: %d %s", resp.StatusCode, body)
	}
	again.Stop(t)

	// Count what is stored, with the database opened in this process.
	cfg, err := config.Parse([]byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", ""
	app := NewApp(cfg, AppOptions{})
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	stored := func(base, n int) int {
		total := 0
		for i := range n {
			rs, err := app.store.Readings(sim.NewSensor(base+i, 0).ID, time.Time{}, time.Now().Add(time.Hour), 1<<30, false)
			if err != nil {
				t.Fatal(err)
			}
			total += len(rs)
		}
		return total
	}
	q1, q0 := stored(0, 500), stored(500, 500)
	t.Logf("stored after restart: %d QoS 1 readings (%d acknowledged), %d QoS 0 readings (%d sent); %d QoS 0 readings lost in the kill",
		q1, acked.Published, q0, qos0.Published, qos0.Published-int64(q0))
	if int64(q1) < acked.Published {
		t.Errorf("only %d QoS 1 readings stored; %d were acknowledged before the kill", q1, acked.Published)
	}
	if float64(q1+q0) < processedBefore {
		t.Errorf("%d readings stored; the agent had processed %.0f a second before the kill", q1+q0, processedBefore)
	}
}

// Figure held: with the uplink's broker down for the whole run (nothing
// listens on upstream.url), every alert transition the engine emits is kept
// in the outbox (depth == edgeagent_alerts_total), readings keep flowing
// (0 lost), the outbox survives a restart, and once a broker listens there
// the outbox drains to 0 with every entry published.
func TestFault_uplinkDownForTheWholeRun(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dir := t.TempDir()
	mosq := startMosquittoProc(t, dir)
	mosq.Stop() // the port is known, nothing listens on it
	cfgText := childConfig(filepath.Join(dir, "data"),
		fmt.Sprintf("upstream: {url: \"tcp://127.0.0.1:%d\", backoff_min: 100ms, backoff_max: 1s}\n", mosq.Port)+soakRules)
	agent := startChild(t, dir, cfgText)
	metricsURL := "http://" + agent.HTTP + "/metrics"
	res, err := loadgen.Run(context.Background(), loadgen.Options{Broker: "tcp://" + agent.MQTT, Clients: 8, Sensors: 200,
		Rate: 4000, Duration: 8 * time.Second, AnomalyRate: 1.0 / 300, LatencyEvery: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var m loadgen.Samples
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m, err = loadgen.Scrape(context.Background(), metricsURL); err == nil &&
			int64(m.Sum("edgeagent_readings_processed_total")+m.Sum("edgeagent_readings_rejected_total")) >= res.Published {
			break
		}
	}
	// Alerts are committed with the next batch (commit_interval): poll until
	// the outbox has caught up with the alert counter.
	var alerts, depth float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m, err = loadgen.Scrape(context.Background(), metricsURL); err != nil {
			t.Fatal(err)
		}
		alerts, depth = m.Sum("edgeagent_alerts_total"), m.Sum("edgeagent_outbox_depth")
		if depth == alerts {
			break
		}
	}
	t.Logf("uplink down: %d readings published, %.0f processed, %.0f alert transitions, outbox depth %.0f (%.0f bytes), connected %v",
		res.Published, m.Sum("edgeagent_readings_processed_total"), alerts, depth, m.Sum("edgeagent_outbox_bytes"), m.Sum("edgeagent_upstream_connected"))
	if lost := res.Published - int64(m.Sum("edgeagent_readings_processed_total")+m.Sum("edgeagent_readings_rejected_total")); lost != 0 {
		t.Errorf("%d readings lost while the uplink was down", lost)
	}
	if alerts == 0 {
		t.Fatal("no alert fired: the test proves nothing")
	}
	if depth != alerts {
		t.Errorf("outbox depth %.0f; want every alert transition kept (%.0f)", depth, alerts)
	}
	agent.Stop(t)

	// Restart with the broker up: what was kept is delivered.
	mosq.Start()
	again := startChild(t, dir, cfgText)
	var left, published float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m, err := loadgen.Scrape(context.Background(), "http://"+again.HTTP+"/metrics"); err == nil {
			left, published = m.Sum("edgeagent_outbox_depth"), m.Sum("edgeagent_upstream_published_total")
			if left == 0 && published >= depth {
				break
			}
		}
	}
	again.Stop(t)
	if left != 0 || published < depth {
		t.Errorf("after the uplink came back: %.0f entries left, %.0f published; want 0 left and at least %.0f published", left, published, depth)
	}
}
