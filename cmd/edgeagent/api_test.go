package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/edgeagent/edgeagent/agent/api"
)

const apiToken = "e2e-token-0123456789"

// apiRules: temperature sensors get a fixed threshold (a deterministic alert
// for an injected value) and a z-score (an expected band on the chart).
const apiRules = `
rules:
  - name: temps
    match: {kind: temperature}
    detectors: [{type: threshold, max: 100}, {type: zscore, warmup: 10}]
    alert: {open: 0.8, close: 0.5, for: 0s, resolve_after: 1m}
`

// startSimApp runs a whole agent with a token file and the simulator
// publishing n sensors at rate readings/s each over MQTT.
func startSimApp(t *testing.T, n int, rate float64) *App {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("gateway_id: e2e-gw\ndata_dir: %s\nmqtt: {listen: \"127.0.0.1:0\", allow_anonymous: true}\n"+
		"http: {listen: \"127.0.0.1:0\", token_file: %s, open_metrics: false}\nstorage: {commit_interval: 20ms}\n%s",
		filepath.Join(dir, "data"), tokenFile, apiRules)
	return startAppConfig(t, yaml, AppOptions{Simulate: n, SimulateRate: rate})
}

// call does one API request with the token (or none) and decodes JSON into out.
func call(t *testing.T, app *App, method, path, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+app.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// TestAPI_endToEnd drives a real agent fed by the simulator over MQTT:
// every endpoint with and without the token, an anomaly POSTed over HTTP
// ingest becoming a stored alert, and the live stream.
func TestAPI_endToEnd(t *testing.T) {
	app := startSimApp(t, 5, 10)
	const sensor = "sim-temperature-000"

	// Open and protected endpoints.
	for _, tt := range []struct {
		path  string
		token string
		code  int
	}{
		{"/healthz", "", 200}, {"/api/v1/status", "", 401}, {"/api/v1/status", "wrong", 401},
		{"/metrics", "", 401}, {"/metrics", apiToken, 200}, {"/", "", 200}, {"/ws", "", 401},
	} {
		if code := call(t, app, "GET", tt.path, tt.token, "", nil); code != tt.code {
			t.Errorf("GET %s (token %q) = %d; want %d", tt.path, tt.token, code, tt.code)
		}
	}
	eventually(t, "ready", func() bool { return call(t, app, "GET", "/readyz", "", "", nil) == 200 })

	var st api.Status
	eventually(t, "5 sensors with readings stored", func() bool {
		call(t, app, "GET", "/api/v1/status", apiToken, "", &st)
		return st.Sensors == 5 && st.Readings.Processed >= 50 && st.MQTTClients >= 1 && st.DBSize > 0
	})
	if st.Gateway != "e2e-gw" || st.Uplink.State != "disabled" {
		t.Fatalf("status = %+v", st)
	}

	var list api.SensorList
	if code := call(t, app, "GET", "/api/v1/sensors?kind=temperature", apiToken, "", &list); code != 200 || len(list.Sensors) != 1 || list.Sensors[0].ID != sensor || list.Total != 5 {
		t.Fatalf("sensors?kind=temperature = %d %+v", code, list)
	}

	var det api.SensorDetail
	eventually(t, "z-score band learned", func() bool {
		det = api.SensorDetail{}
		call(t, app, "GET", "/api/v1/sensors/"+sensor, apiToken, "", &det)
		for _, d := range det.Detectors {
			if d.Type == "zscore" && d.Band != nil {
				return true
			}
		}
		return false
	})
	if len(det.Detectors) < 2 {
		t.Fatalf("detectors = %+v; want threshold and zscore", det.Detectors)
	}

	var raw api.Series
	if code := call(t, app, "GET", "/api/v1/sensors/"+sensor+"/readings?limit=20", apiToken, "", &raw); code != 200 || raw.Resolution != "raw" || len(raw.Points) == 0 {
		t.Fatalf("raw readings = %d %+v", code, raw)
	}
	var roll api.Series
	from := time.Now().Add(-6 * time.Hour).UnixMilli()
	if code := call(t, app, "GET", fmt.Sprintf("/api/v1/sensors/%s/readings?from=%d", sensor, from), apiToken, "", &roll); code != 200 || roll.Resolution != "rollup" || len(roll.Rollups) == 0 {
		t.Fatalf("rollups = %d %+v", code, roll)
	}
	var bad api.Error
	if code := call(t, app, "GET", "/api/v1/sensors/"+sensor+"/readings?from=noon", apiToken, "", &bad); code != 400 || bad.Field != "from" {
		t.Fatalf("bad from = %d %+v", code, bad)
	}

	// Live stream: a client subscribed to temperature sensors, token as subprotocol.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+app.HTTPAddr()+"/ws?sensor=sim-temp*&rate=50",
		&websocket.DialOptions{Subprotocols: []string{api.Subprotocol, "token." + apiToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	// An anomaly through HTTP ingest: durable, then an alert.
	var ing api.IngestResponse
	body := `[{"topic":"sensors/` + sensor + `/temperature","payload":{"value":1000}},{"topic":"sensors/x","payload":1}]`
	if code := call(t, app, "POST", "/api/v1/readings", apiToken, body, &ing); code != 200 || ing.Accepted != 1 || ing.Errors != 1 || ing.Items[1].Field != "topic" {
		t.Fatalf("POST readings = %d %+v", code, ing)
	}
	var page api.AlertPage
	eventually(t, "the alert stored", func() bool {
		page = api.AlertPage{}
		call(t, app, "GET", "/api/v1/alerts?sensor="+sensor+"&state=firing", apiToken, "", &page)
		return len(page.Alerts) > 0
	})
	if a := page.Alerts[0]; a.Detector == "" || a.Reason == "" || a.Gateway != "e2e-gw" {
		t.Fatalf("alert = %+v", a)
	}

	// The stream carried only temperature readings, and the alert.
	var readings, alerts int
	for alerts == 0 {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("ws read after %d readings: %v", readings, err)
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			var m api.Message
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatal(err)
			}
			switch {
			case m.Type == "reading" && m.Reading.Sensor == sensor:
				readings++
			case m.Type == "alert" && m.Alert.Sensor == sensor:
				alerts++
			default:
				t.Fatalf("unexpected message %s", line)
			}
		}
	}
	if readings == 0 {
		t.Fatal("no live readings before the alert")
	}
	req, _ := http.NewRequest("GET", "http://"+app.HTTPAddr()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"edgeagent_ws_clients 1", `edgeagent_http_requests_total{code="401"} 4`, "edgeagent_ws_dropped_total 0", "edgeagent_readings_processed_total"} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestAPI_browser loads the web view from a running agent fed by the
// simulator in headless Chromium: the sensor list and a chart render, a live
// value changes, an anomaly published over MQTT shows its badge; screenshots
// are saved and page weight and time to first data are logged.
func TestAPI_browser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("no %s: run `make deps` (Debian package chromium)", chromium)
	}
	app := startSimApp(t, 10, 5)

	actx, acancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	var mu sync.Mutex
	var transferred int64
	_ = chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			defer mu.Unlock()
			t.Errorf("page exception: %s %v", e.ExceptionDetails.Text, e.ExceptionDetails.Exception)
		}
	})
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		dir := os.Getenv("EDGEAGENT_ARTIFACTS")
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "edgeagent-artifacts")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	const sensor = "sim-temperature-000"
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+app.HTTPAddr()+"/#token="+apiToken)); err != nil {
		t.Fatal(err)
	}
	poll("sensor list", `document.querySelectorAll('#sensors li[data-sensor]').length === 10`)
	listAt := time.Since(start)
	poll("chart", `+document.getElementById('chart').dataset.points > 0`)
	poll("live reading", `window.__edge.firstLive != null`)
	transferred, _ = chromedp.Run(ctx, chromedp.Evaluate[int64](`performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).filter(e => !e.name.includes('/api/')).reduce((n, e) => n + e.transferSize, 0)`))
	firstData, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.__edge.firstData`))
	firstLive, _ := chromedp.Run(ctx, chromedp.Evaluate[float64](`window.__edge.firstLive`))
	t.Logf("page weight: %d bytes transferred (HTML+CSS+JS, uncompressed); time to first data %.0f ms after script start, first live reading %.0f ms; navigate-to-list %v",
		transferred, firstData, firstLive, listAt.Round(time.Millisecond))

	sel := `document.querySelector('li[data-sensor="` + sensor + `"] .val')`
	before, err := chromedp.Run(ctx, chromedp.Evaluate[string](sel+`.dataset.value`))
	if err != nil {
		t.Fatal(err)
	}
	poll("live value change", sel+`.dataset.value !== `+fmt.Sprintf("%q", before))
	poll("band on the chart", `document.getElementById('chart-info').textContent.includes('readings')`)

	// The anomaly, published over MQTT like a sensor would.
	c := connect(t, app.MQTTAddr(), "e2e-anomaly")
	if tok := c.Publish("sensors/"+sensor+"/temperature", 1, false, `{"value":1000}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	poll("anomaly badge", `!document.querySelector('li[data-sensor="`+sensor+`"] .badge').hidden`)
	poll("alert with its reason in the panel", `[...document.querySelectorAll('#alerts li')].some(li => li.textContent.includes('`+sensor+`') && li.querySelector('.reason').textContent.length > 0)`)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector('li[data-sensor="`+sensor+`"]').click()`)); err != nil {
		t.Fatal(err)
	}
	poll("chart of the sensor", `document.getElementById('chart-title').textContent === '`+sensor+`' && +document.getElementById('chart').dataset.points > 0`)
	time.Sleep(300 * time.Millisecond) // let the next frame paint before the screenshot
	shot("e2e-webview-desktop.png")

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	poll("phone layout", `document.documentElement.scrollWidth <= window.innerWidth`)
	shot("e2e-webview-phone.png")
}
