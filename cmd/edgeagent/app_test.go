package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent/config"
)

// startApp runs a whole agent on ephemeral loopback ports with its data in a
// temp dir, with yaml appended to that base config.
func startApp(t *testing.T, yaml string) *App {
	t.Helper()
	base := fmt.Sprintf("gateway_id: test-gw\ndata_dir: %s\nmqtt: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"127.0.0.1:0\"}\n",
		filepath.Join(t.TempDir(), "data"))
	return startAppConfig(t, base+yaml, AppOptions{})
}

// startAppConfig runs a whole agent on the complete config yaml and stops it
// when the test ends.
func startAppConfig(t *testing.T, yaml string, opts AppOptions) *App {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp(cfg, opts)
	if err := app.Start(context.Background()); err != nil {
		app.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := app.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return app
}

func connect(t *testing.T, addr, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// metric returns the value of one sample line of /metrics, e.g.
// `edgeagent_readings_rejected_total{reason="not_numeric"}`.
func metric(t *testing.T, app *App, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + app.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestApp_endToEnd_QoS1ReadingsAreStoredBeforeAck(t *testing.T) {
	app := startApp(t, "")
	c := connect(t, app.MQTTAddr(), "sensor-1")
	for i := range 50 {
		payload := fmt.Sprintf(`{"value": %d.5, "ts": %d}`, i, time.Now().Add(time.Duration(i-50)*time.Second).UnixMilli())
		tok := c.Publish("sensors/boiler-1/temperature", 1, false, payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	// The PUBACK came after the commit, so the readings are queryable now.
	rs, err := app.store.Readings("boiler-1", time.Time{}, time.Now().Add(time.Minute), 100, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 50 || rs[0].Value != 0.5 || rs[49].Value != 49.5 || rs[0].Kind != "temperature" {
		t.Fatalf("stored %d readings (first %+v); want 50 in order", len(rs), rs)
	}
	if got := metric(t, app, "edgeagent_readings_processed_total"); got != 50 {
		t.Errorf("processed = %v; want 50", got)
	}
}

func TestApp_badPayloadsAreCountedAndAcknowledged(t *testing.T) {
	app := startApp(t, "")
	c := connect(t, app.MQTTAddr(), "bad-sensor")
	for _, p := range []string{`{"value": `, `"abc"`, `{"temp": 1}`, "\x00\x01\x02"} {
		tok := c.Publish("sensors/s1/temperature", 1, false, p)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %q: not acknowledged: %v", p, tok.Error())
		}
	}
	tok := c.Publish("sensors/s1/temperature", 1, false, "21.5")
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	eventually(t, "the good reading", func() bool { return metric(t, app, "edgeagent_readings_processed_total") == 1 })
	var rejected float64
	resp, _ := http.Get("http://" + app.HTTPAddr() + "/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "edgeagent_readings_rejected_total{") {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			rejected += v
		}
	}
	if rejected != 4 {
		t.Errorf("rejected total = %v; want 4\n%s", rejected, body)
	}
}

func TestApp_unmatchedTopicsPassThrough(t *testing.T) {
	app := startApp(t, "")
	sub := connect(t, app.MQTTAddr(), "watcher")
	got := make(chan string, 1)
	if tok := sub.Subscribe("#", 0, func(_ paho.Client, m paho.Message) { got <- m.Topic() + " " + string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub := connect(t, app.MQTTAddr(), "light-switch")
	pub.Publish("home/kitchen/light", 1, false, "on").WaitTimeout(5 * time.Second)
	select {
	case m := <-got:
		if m != "home/kitchen/light on" {
			t.Errorf("subscriber got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("unmatched topic not delivered to a subscriber")
	}
	eventually(t, "unmatched counter", func() bool { return metric(t, app, "edgeagent_mqtt_unmatched_total") == 1 })
}

func TestApp_mosquittoPubReachesThePipeline(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatal("mosquitto_pub not installed: run `make deps` (Debian package mosquitto-clients)")
	}
	app := startApp(t, "")
	host, port, _ := strings.Cut(app.MQTTAddr(), ":")
	out, err := exec.Command(bin, "-h", host, "-p", port, "-q", "1", "-t", "sensors/greenhouse/humidity", "-m", `{"value": 61.2}`).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v\n%s", err, out)
	}
	eventually(t, "the reading", func() bool { return metric(t, app, "edgeagent_readings_processed_total") == 1 })
}

func TestApp_healthAndReadiness(t *testing.T) {
	app := startApp(t, "")
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get("http://" + app.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d %s; want %d", path, resp.StatusCode, body, want)
		}
	}
}

func TestApp_Close_drainsInFlightReadings(t *testing.T) {
	base := fmt.Sprintf("gateway_id: test-gw\ndata_dir: %s\nmqtt: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"\"}\n", filepath.Join(t.TempDir(), "data"))
	cfg, err := config.Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp(cfg, AppOptions{})
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := connect(t, app.MQTTAddr(), "burst")
	acked := 0
	for i := range 2000 {
		tok := c.Publish(fmt.Sprintf("sensors/s%d/temperature", i%20), 1, false, fmt.Sprint(i))
		if i < 1000 {
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			acked++
		}
	}
	if err := app.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Reopen the database: every acknowledged reading is there.
	app2 := NewApp(cfg, AppOptions{})
	if err := app2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer app2.Close()
	total := 0
	for s := range 20 {
		rs, err := app2.store.Readings(fmt.Sprintf("s%d", s), time.Time{}, time.Now().Add(time.Hour), 10000, false)
		if err != nil {
			t.Fatal(err)
		}
		total += len(rs)
	}
	if total < acked {
		t.Errorf("after restart %d readings stored; want at least the %d acknowledged", total, acked)
	}
}
