package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/api"
	"github.com/edgeagent/edgeagent/agent/ingest"
	"github.com/edgeagent/edgeagent/storage"
)

// newDecoder is the real ingest decoder with the default topic template
// sensors/{sensor}/{kind}.
func newDecoder(t *testing.T) *ingest.Decoder {
	t.Helper()
	d, err := ingest.New(ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// storeAlerts adapts storage's alert query to the API's, as cmd does.
func storeAlerts(db *storage.DB) api.AlertsFunc {
	return func(_ context.Context, q api.AlertQuery) ([]agent.Alert, string, error) {
		return db.Alerts(storage.AlertQuery{Sensor: q.Sensor, State: string(q.State), Since: q.Since, Limit: q.Limit, Cursor: q.Cursor})
	}
}

// storeRollups adapts storage's rollups, as cmd does.
func storeRollups(db *storage.DB) api.RollupsFunc {
	return func(sensor string, from, to time.Time, limit int) ([]api.Rollup, error) {
		rs, err := db.Rollups(sensor, from, to, limit)
		out := make([]api.Rollup, len(rs))
		for i, r := range rs {
			out[i] = api.Rollup{Start: r.Start, Count: r.Count, Min: r.Min, Max: r.Max, Mean: r.Mean, Last: r.Last}
		}
		return out, err
	}
}

// bandStage stands in for agent/anomaly (not on main yet): it expects values
// in [0, 100] and fires an alert for a value above.
type bandStage struct{ open map[string]bool }

func (b *bandStage) Process(r agent.Reading, res *agent.Result, as []agent.Alert) []agent.Alert {
	*res = agent.Result{Reading: r, Raw: r.Value, Band: agent.Band{Lo: 0, Hi: 100}, Detector: "band"}
	if r.Value > 100 && !b.open[r.Sensor] {
		b.open[r.Sensor] = true
		res.Score = 1
		as = append(as, agent.Alert{ID: "alert-" + r.Sensor, Sensor: r.Sensor, Detector: "band", State: agent.AlertFiring,
			Reason: fmt.Sprintf("value %g above 100", r.Value), Value: r.Value, StartedAt: r.Time, UpdatedAt: r.Time})
	}
	return as
}

func (b *bandStage) Tick(time.Time, []agent.Alert) []agent.Alert { return nil }

type fixture struct {
	srv      *httptest.Server
	api      *api.Server
	pipe     *agent.Pipeline
	db       *storage.DB
	reg      *prometheus.Registry
	intake   *agent.Intake
	t0       time.Time
	detCalls atomic.Int64
}

// newFixture runs real storage (bbolt in a temp dir), a real pipeline with
// the band stage and a real Intake behind an httptest server. token ""
// disables auth. It seeds three sensors (10 readings each, through the
// intake), 3 hours of older boiler-1 history (180 one-minute readings, hence
// rollups) and 25 alerts.
func newFixture(t *testing.T, token string, mod ...func(*api.Options)) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry()}
	db, err := storage.Open(filepath.Join(t.TempDir(), "edge.db"), storage.Options{CommitInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.db = db
	hub := api.NewHub(api.HubOptions{Registerer: f.reg})
	f.pipe = agent.NewPipeline(agent.PipelineOptions{
		Shards: 2, Registerer: f.reg, NewStage: func(int) agent.Stage { return &bandStage{open: map[string]bool{}} },
		Store: db, Observers: []agent.Observer{hub}, Gateway: "gw-test",
	})
	f.pipe.Start()
	dec := newDecoder(t)
	f.intake = agent.NewIntake(f.pipe, dec, 5*time.Second)
	opts := api.Options{
		Gatherer: f.reg, Registerer: f.reg, Gateway: "gw-test", Version: "v-test",
		Sensors: f.pipe, History: db, Rollups: storeRollups(db), Alerts: storeAlerts(db), Decoder: dec, Ingester: f.intake,
		DetectorState: func(st agent.Stage, sensor string) []api.DetectorView {
			f.detCalls.Add(1)
			return []api.DetectorView{{Name: "band", Type: "threshold", Band: &[2]float64{0, 100}, State: "ok"}}
		},
		Status: func(context.Context) api.StatusExtra {
			return api.StatusExtra{MQTTClients: 3, Uplink: api.UplinkStatus{State: "connected"}, Outbox: api.OutboxStatus{Depth: 2}, DBSize: db.Size()}
		},
		Checks: map[string]api.Check{"pipeline": func() error { return f.pipe.Stalled(time.Minute) }, "storage": db.Ready},
		Token:  token, Hub: hub, RawMaxRange: time.Hour,
	}
	for _, m := range mod {
		m(&opts)
	}
	f.api = api.New(opts)
	f.srv = httptest.NewServer(f.api)
	t.Cleanup(func() {
		f.srv.Close()
		if err := f.api.Close(); err != nil {
			t.Error(err)
		}
		if err := f.pipe.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	f.t0 = time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	for i := range 10 {
		for _, s := range []string{"boiler-1/temperature", "boiler-2/temperature", "pump-1/power"} {
			ts := f.t0.Add(time.Duration(i) * time.Second).UnixMilli()
			m := agent.Message{Topic: "sensors/" + s, Payload: fmt.Appendf(nil, `{"value":%d,"ts":%d}`, 20+i, ts), Durable: true}
			if err := f.intake.Ingest(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	var old []agent.Result
	for i := range 180 {
		at := f.t0.Add(-4 * time.Hour).Add(time.Duration(i) * time.Minute) // ends an hour before t0
		old = append(old, agent.Result{Reading: agent.Reading{Sensor: "boiler-1", Kind: "temperature", Value: 2, Time: at, Arrived: at}, Raw: 2})
	}
	var as []agent.Alert
	for i := range 25 { // some share a start time
		st := agent.AlertFiring
		if i%3 == 0 {
			st = agent.AlertResolved
		}
		at := f.t0.Add(time.Duration(i/2) * time.Second)
		as = append(as, agent.Alert{ID: fmt.Sprintf("a%02d", i), Gateway: "gw-test", Sensor: "boiler-1", State: st,
			Detector: "zscore", Reason: "value 99 above band", Value: 99, StartedAt: at, UpdatedAt: at})
	}
	db.Write(old, as)
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) do(t *testing.T, method, path, token string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

type apiCase struct {
	name      string
	method    string
	path      string
	body      string
	code      int
	field     string             // for errors: the "field" of the body
	check     func([]byte) error // for successes: a look at the body
	open      bool               // reachable without the token
	skipNoTok bool
}

func decodeInto[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

var apiCases = []apiCase{
	{name: "healthz", method: "GET", path: "/healthz", code: 200, open: true},
	{name: "readyz", method: "GET", path: "/readyz", code: 200, open: true, check: func(b []byte) error {
		st, err := decodeInto[api.ReadyStatus](b)
		if err == nil && (!st.Ready || st.Checks["pipeline"] != "ok") {
			err = fmt.Errorf("ready = %+v", st)
		}
		return err
	}},
	{name: "status", method: "GET", path: "/api/v1/status", code: 200, check: func(b []byte) error {
		st, err := decodeInto[api.Status](b)
		if err != nil {
			return err
		}
		if st.Gateway != "gw-test" || st.Sensors != 3 || st.Readings.Received != 30 || st.Readings.Processed != 30 ||
			st.MQTTClients != 3 || st.Uplink.State != "connected" || st.Outbox.Depth != 2 || st.DBSize <= 0 {
			return fmt.Errorf("status = %+v", st)
		}
		return nil
	}},
	{name: "sensors all", method: "GET", path: "/api/v1/sensors", code: 200, check: wantSensors("boiler-1", "boiler-2", "pump-1")},
	{name: "sensors kind", method: "GET", path: "/api/v1/sensors?kind=power", code: 200, check: wantSensors("pump-1")},
	{name: "sensors prefix", method: "GET", path: "/api/v1/sensors?q=boiler", code: 200, check: wantSensors("boiler-1", "boiler-2")},
	{name: "sensors sort desc", method: "GET", path: "/api/v1/sensors?sort=-id&limit=2", code: 200, check: wantSensors("pump-1", "boiler-2")},
	{name: "sensors alerting false", method: "GET", path: "/api/v1/sensors?alerting=false&sort=kind", code: 200, check: wantSensors("pump-1", "boiler-1", "boiler-2")},
	{name: "sensors alerting true", method: "GET", path: "/api/v1/sensors?alerting=true", code: 200, check: wantSensors()},
	{name: "sensors bad sort", method: "GET", path: "/api/v1/sensors?sort=colour", code: 400, field: "sort"},
	{name: "sensors bad alerting", method: "GET", path: "/api/v1/sensors?alerting=maybe", code: 400, field: "alerting"},
	{name: "sensors bad limit", method: "GET", path: "/api/v1/sensors?limit=0", code: 400, field: "limit"},
	{name: "sensors unknown param", method: "GET", path: "/api/v1/sensors?kinds=x", code: 400, field: "kinds"},
	{name: "sensor detail", method: "GET", path: "/api/v1/sensors/boiler-1", code: 200, check: func(b []byte) error {
		d, err := decodeInto[struct {
			ID         string             `json:"id"`
			Value      float64            `json:"value"`
			Detectors  []api.DetectorView `json:"detectors"`
			OpenAlerts []agent.Alert      `json:"open_alerts"`
		}](b)
		if err == nil && (d.ID != "boiler-1" || d.Value != 29 || len(d.Detectors) != 1 || d.Detectors[0].Band == nil || len(d.OpenAlerts) == 0) {
			err = fmt.Errorf("detail = %+v", d)
		}
		return err
	}},
	{name: "sensor unknown", method: "GET", path: "/api/v1/sensors/nope", code: 404, field: "id"},
	{name: "readings default raw", method: "GET", path: "/api/v1/sensors/boiler-1/readings", code: 200, check: wantSeries("raw", 10, 0)},
	{name: "readings limit", method: "GET", path: "/api/v1/sensors/boiler-1/readings?limit=4", code: 200, check: wantSeries("raw", 4, 0)},
	{name: "readings rollup by range", method: "GET", path: "/api/v1/sensors/boiler-1/readings?from=REL-6h", code: 200, check: wantSeries("rollup", 0, 181)},
	{name: "readings forced raw", method: "GET", path: "/api/v1/sensors/boiler-1/readings?from=REL-6h&resolution=raw", code: 200, check: wantSeries("raw", 190, 0)},
	{name: "readings rfc3339", method: "GET", path: "/api/v1/sensors/boiler-1/readings?from=RFC-20m&to=RFC-0m", code: 200, check: wantSeries("raw", 10, 0)},
	{name: "readings unknown sensor empty", method: "GET", path: "/api/v1/sensors/nope/readings", code: 200, check: wantSeries("raw", 0, 0)},
	{name: "readings bad from", method: "GET", path: "/api/v1/sensors/boiler-1/readings?from=yesterday", code: 400, field: "from"},
	{name: "readings bad to", method: "GET", path: "/api/v1/sensors/boiler-1/readings?to=2026-13-01T00:00:00Z", code: 400, field: "to"},
	{name: "readings from after to", method: "GET", path: "/api/v1/sensors/boiler-1/readings?from=2000&to=1000", code: 400, field: "from"},
	{name: "readings desc", method: "GET", path: "/api/v1/sensors/boiler-1/readings?order=desc&limit=3", code: 200, check: wantSeries("raw", 3, 0)},
	{name: "readings bad order", method: "GET", path: "/api/v1/sensors/boiler-1/readings?order=up", code: 400, field: "order"},
	{name: "readings bad resolution", method: "GET", path: "/api/v1/sensors/boiler-1/readings?resolution=5m", code: 400, field: "resolution"},
	{name: "readings limit too big", method: "GET", path: "/api/v1/sensors/boiler-1/readings?limit=10001", code: 400, field: "limit"},
	{name: "alerts", method: "GET", path: "/api/v1/alerts?limit=5", code: 200, check: wantAlerts(5, true)},
	{name: "alerts state", method: "GET", path: "/api/v1/alerts?state=resolved", code: 200, check: wantAlerts(9, false)},
	{name: "alerts sensor none", method: "GET", path: "/api/v1/alerts?sensor=pump-1", code: 200, check: wantAlerts(0, false)},
	{name: "alerts bad state", method: "GET", path: "/api/v1/alerts?state=burning", code: 400, field: "state"},
	{name: "alerts bad since", method: "GET", path: "/api/v1/alerts?since=soon", code: 400, field: "since"},
	{name: "alerts bad cursor", method: "GET", path: "/api/v1/alerts?cursor=!!!", code: 400, field: "cursor"},
	{name: "alerts bad limit", method: "GET", path: "/api/v1/alerts?limit=1001", code: 400, field: "limit"},
	{name: "post one", method: "POST", path: "/api/v1/readings", body: `{"topic":"sensors/http-1/temperature","payload":{"value":1.5}}`, code: 200, check: wantIngest(1, 0)},
	{name: "post batch per-item errors", method: "POST", path: "/api/v1/readings",
		body: `[{"topic":"sensors/http-2/temperature","payload":{"value":2}},{"topic":"nowhere","payload":{"value":2}},{"topic":"sensors/http-3/power","payload":{"v":1}},{"topic":"sensors/http-4/power","payload":"7.5"},{"topic":"","payload":1}]`,
		code: 200, check: wantIngest(2, 3, "", "topic", "payload", "", "topic")},
	{name: "post all bad", method: "POST", path: "/api/v1/readings", body: `[{"topic":"x","payload":1}]`, code: 422, check: wantIngest(0, 1, "topic")},
	{name: "post malformed", method: "POST", path: "/api/v1/readings", body: `{"topic":`, code: 400, field: "body"},
	{name: "post unknown field", method: "POST", path: "/api/v1/readings", body: `{"topic":"sensors/a/b","payload":1,"qos":1}`, code: 400, field: "body"},
	{name: "post empty", method: "POST", path: "/api/v1/readings", body: ``, code: 400, field: "body"},
	{name: "post empty batch", method: "POST", path: "/api/v1/readings", body: `[]`, code: 400, field: "body"},
	{name: "post too large", method: "POST", path: "/api/v1/readings", body: `[` + strings.Repeat(`{"topic":"sensors/big/t","payload":1},`, 40000) + `{}]`, code: 413, field: "body"},
	{name: "unknown api path", method: "GET", path: "/api/v1/nothing", code: 404, open: true},
	{name: "wrong method", method: "DELETE", path: "/api/v1/sensors", code: 405, open: true},
	{name: "metrics open", method: "GET", path: "/metrics", code: 200, open: true},
	{name: "page", method: "GET", path: "/", code: 200, open: true},
	{name: "page asset", method: "GET", path: "/static/app.js", code: 200, open: true},
	{name: "ws bad glob", method: "GET", path: "/ws?sensor=%5B", code: 400, field: "sensor"},
	{name: "ws bad rate", method: "GET", path: "/ws?rate=0", code: 400, field: "rate"},
}

func wantSensors(ids ...string) func([]byte) error {
	return func(b []byte) error {
		l, err := decodeInto[api.SensorList](b)
		if err != nil {
			return err
		}
		var got []string
		for _, s := range l.Sensors {
			got = append(got, strings.Split(s.ID, "/")[0])
		}
		if !slices.Equal(got, ids) {
			return fmt.Errorf("sensors = %v; want %v", got, ids)
		}
		return nil
	}
}

func wantSeries(res string, points, rollups int) func([]byte) error {
	return func(b []byte) error {
		s, err := decodeInto[api.Series](b)
		if err != nil {
			return err
		}
		if s.Resolution != res || len(s.Points) != points || len(s.Rollups) != rollups {
			return fmt.Errorf("series: resolution %q, %d points, %d rollups; want %q, %d, %d", s.Resolution, len(s.Points), len(s.Rollups), res, points, rollups)
		}
		return nil
	}
}

func wantAlerts(n int, next bool) func([]byte) error {
	return func(b []byte) error {
		p, err := decodeInto[api.AlertPage](b)
		if err != nil {
			return err
		}
		if len(p.Alerts) != n || (p.Next != "") != next {
			return fmt.Errorf("alerts: %d, next %q; want %d, next %v", len(p.Alerts), p.Next, n, next)
		}
		return nil
	}
}

func wantIngest(accepted, errs int, fields ...string) func([]byte) error {
	return func(b []byte) error {
		r, err := decodeInto[api.IngestResponse](b)
		if err != nil {
			return err
		}
		if r.Accepted != accepted || r.Errors != errs {
			return fmt.Errorf("ingest: %s; want accepted %d, errors %d", b, accepted, errs)
		}
		for i, f := range fields {
			if r.Items[i].Field != f {
				return fmt.Errorf("item %d field %q; want %q (%s)", i, r.Items[i].Field, f, b)
			}
		}
		return nil
	}
}

// expandPath replaces REL-6h (Unix ms, 6 h ago) and RFC-20m (RFC 3339).
func expandPath(p string) string {
	for _, pre := range []string{"REL-", "RFC-"} {
		for strings.Contains(p, pre) {
			i := strings.Index(p, pre)
			j := i + len(pre)
			for j < len(p) && p[j] != '&' {
				j++
			}
			d, _ := time.ParseDuration(p[i+len(pre) : j])
			t := time.Now().Add(-d)
			v := fmt.Sprint(t.UnixMilli())
			if pre == "RFC-" {
				v = t.UTC().Format(time.RFC3339)
			}
			p = p[:i] + v + p[j:]
		}
	}
	return p
}

func TestServer_endpoints(t *testing.T) {
	const token = "s3cret-token"
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			tok := ""
			if auth {
				tok = token
			}
			f := newFixture(t, tok, func(o *api.Options) { o.OpenMetrics = true; o.MaxBody = 64 << 10 })
			for _, tt := range apiCases {
				t.Run(tt.name, func(t *testing.T) {
					path := expandPath(tt.path)
					if auth && !tt.open && !tt.skipNoTok {
						code, h, body := f.do(t, tt.method, path, "", []byte(tt.body))
						if code != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "Bearer") {
							t.Fatalf("%s %s without token = %d %s; want 401", tt.method, path, code, body)
						}
						if code, _, _ = f.do(t, tt.method, path, "wrong", []byte(tt.body)); code != 401 {
							t.Fatalf("%s %s with a wrong token = %d; want 401", tt.method, path, code)
						}
					}
					code, h, body := f.do(t, tt.method, path, tok, []byte(tt.body))
					if code != tt.code {
						t.Fatalf("%s %s = %d %s; want %d", tt.method, path, code, body, tt.code)
					}
					if h.Get("X-Content-Type-Options") != "nosniff" {
						t.Errorf("missing nosniff header")
					}
					if code >= 400 && tt.check == nil {
						e, err := decodeInto[map[string]string](body)
						if err != nil || e["error"] == "" || e["field"] != tt.field {
							t.Fatalf("error body %s; want field %q", body, tt.field)
						}
					}
					if tt.check != nil {
						if err := tt.check(body); err != nil {
							t.Fatal(err)
						}
					}
				})
			}
			if got := testutil.ToFloat64(mustCounter(t, f.reg, "edgeagent_http_requests_total", "400")); got < 10 {
				t.Errorf("edgeagent_http_requests_total{code=400} = %v; want the bad requests counted", got)
			}
			if auth {
				if got := testutil.ToFloat64(mustCounter(t, f.reg, "edgeagent_http_requests_total", "401")); got < 20 {
					t.Errorf("edgeagent_http_requests_total{code=401} = %v", got)
				}
			}
		})
	}
}

// mustCounter finds the counter child with the given label value in reg.
func mustCounter(t *testing.T, reg *prometheus.Registry, name, code string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if code == "" {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
			for _, l := range m.GetLabel() {
				if l.GetValue() == code {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return 0 })
}

func TestServer_postReadingsReachPipeline(t *testing.T) {
	f := newFixture(t, "")
	code, _, body := f.do(t, "POST", "/api/v1/readings", "", []byte(`[{"topic":"sensors/http-9/temperature","payload":{"value":42.5}}]`))
	if code != 200 {
		t.Fatalf("POST = %d %s", code, body)
	}
	// Durable ingest returned: the pipeline has processed it.
	code, _, body = f.do(t, "GET", "/api/v1/sensors/http-9", "", nil)
	d, err := decodeInto[api.SensorDetail](body)
	if code != 200 || err != nil || d.Value != 42.5 || d.Kind != "temperature" {
		t.Fatalf("GET sensor after POST = %d %s (%v)", code, body, err)
	}
	if f.detCalls.Load() == 0 {
		t.Error("DetectorState was not called")
	}
}

func TestServer_sensorIDWithSlash(t *testing.T) {
	f := newFixture(t, "")
	// A sensor id may contain "/"; the page encodes it as %2F.
	if err := f.pipe.Submit(context.Background(), agent.Reading{Sensor: "kitchen/temp", Value: 1, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, body := f.do(t, "GET", "/api/v1/sensors/kitchen%2Ftemp", "", nil)
		if code == 200 {
			if d, _ := decodeInto[api.SensorDetail](body); d.ID != "kitchen/temp" {
				t.Fatalf("detail id %q", d.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /api/v1/sensors/kitchen%%2Ftemp = %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _, body := f.do(t, "GET", "/api/v1/sensors/kitchen%2Ftemp/readings", "", nil); code != 200 {
		t.Fatalf("readings of kitchen/temp = %d %s", code, body)
	}
}

func TestServer_alertsCursorPagination(t *testing.T) {
	f := newFixture(t, "")
	seen := map[string]bool{}
	var last time.Time
	path := "/api/v1/alerts?limit=4"
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("pagination does not end")
		}
		code, _, body := f.do(t, "GET", path, "", nil)
		p, err := decodeInto[api.AlertPage](body)
		if code != 200 || err != nil {
			t.Fatalf("GET %s = %d %s", path, code, body)
		}
		if p.Next != "" && len(p.Alerts) != 4 {
			t.Fatalf("page %d has %d alerts and a next cursor", page, len(p.Alerts))
		}
		for _, a := range p.Alerts {
			if seen[a.ID] {
				t.Fatalf("alert %s on two pages", a.ID)
			}
			if !last.IsZero() && a.StartedAt.After(last) {
				t.Fatalf("alert %s started %v after the previous one (%v): not newest first", a.ID, a.StartedAt, last)
			}
			seen[a.ID], last = true, a.StartedAt
		}
		if p.Next == "" {
			break
		}
		path = "/api/v1/alerts?limit=4&cursor=" + p.Next
	}
	if len(seen) != 25 {
		t.Fatalf("paged through %d alerts; want 25", len(seen))
	}
}

func TestServer_cors(t *testing.T) {
	f := newFixture(t, "", func(o *api.Options) { o.CORSOrigins = []string{"http://grafana.lan:3000"} })
	for _, tt := range []struct {
		origin string
		allow  string
		pre    int
	}{
		{"http://grafana.lan:3000", "http://grafana.lan:3000", 204},
		{"http://evil.example", "", 403},
	} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/status", nil)
		req.Header.Set("Origin", tt.origin)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.allow {
			t.Errorf("Origin %s: Allow-Origin %q; want %q", tt.origin, got, tt.allow)
		}
		req, _ = http.NewRequest("OPTIONS", f.srv.URL+"/api/v1/readings", nil)
		req.Header.Set("Origin", tt.origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err = f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.pre {
			t.Errorf("preflight from %s = %d; want %d", tt.origin, resp.StatusCode, tt.pre)
		}
	}
}

func TestServer_metricsBehindToken(t *testing.T) {
	f := newFixture(t, "tok", func(o *api.Options) { o.OpenMetrics = false })
	if code, _, _ := f.do(t, "GET", "/metrics", "", nil); code != 401 {
		t.Fatalf("/metrics without token = %d; want 401", code)
	}
	code, _, body := f.do(t, "GET", "/metrics", "tok", nil)
	if code != 200 || !bytes.Contains(body, []byte("edgeagent_ws_clients")) || !bytes.Contains(body, []byte("edgeagent_readings_processed_total 30")) {
		t.Fatalf("/metrics = %d\n%s", code, body)
	}
}

func TestServer_pprofOnlyWhenAskedAndBehindToken(t *testing.T) {
	off := newFixture(t, "tok")
	if code, _, _ := off.do(t, "GET", "/debug/pprof/", "tok", nil); code != 404 {
		t.Fatalf("/debug/pprof/ with pprof off = %d; want 404", code)
	}
	on := newFixture(t, "tok", func(o *api.Options) { o.Pprof = true })
	if code, _, _ := on.do(t, "GET", "/debug/pprof/heap", "", nil); code != 401 {
		t.Fatalf("/debug/pprof/heap without token = %d; want 401", code)
	}
	code, _, body := on.do(t, "GET", "/debug/pprof/goroutine?debug=1", "tok", nil)
	if code != 200 || !bytes.Contains(body, []byte("goroutine profile:")) {
		t.Fatalf("/debug/pprof/goroutine = %d\n%.200s", code, body)
	}
}

func TestServer_pageHeaders(t *testing.T) {
	f := newFixture(t, "tok")
	code, h, body := f.do(t, "GET", "/", "", nil)
	if code != 200 || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") ||
		!bytes.Contains(body, []byte(`<script src="/static/app.js">`)) {
		t.Fatalf("GET / = %d %v\n%s", code, h, body)
	}
	// No asset may reach outside the gateway.
	for _, p := range []string{"/", "/static/app.js", "/static/app.css"} {
		_, _, b := f.do(t, "GET", p, "", nil)
		if bytes.Contains(b, []byte("http://")) || bytes.Contains(b, []byte("https://")) {
			if !bytes.Contains(b, []byte("http://www.w3.org/2000/svg")) || bytes.Count(b, []byte("://")) != bytes.Count(b, []byte("www.w3.org/2000/svg")) {
				t.Errorf("%s refers to an external URL", p)
			}
		}
	}
}

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("  abc-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	_ = os.WriteFile(bad, []byte("a b"), 0o600)
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600)

	for _, tt := range []struct {
		name, file, listen, want, err string
	}{
		{"file wins", file, "0.0.0.0:8080", "abc-123", ""},
		{"loopback no token", "", "127.0.0.1:8080", "", ""},
		{"localhost no token", "", "localhost:8080", "", ""},
		{"ipv6 loopback", "", "[::1]:8080", "", ""},
		{"missing file", filepath.Join(dir, "nope"), "127.0.0.1:1", "", "http.token_file"},
		{"empty file", empty, "127.0.0.1:1", "", "is empty"},
		{"bad chars", bad, "127.0.0.1:1", "", "token contains"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := api.ResolveToken(tt.file, dir, tt.listen)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) || got != tt.want {
				t.Fatalf("ResolveToken(%q, %q) = %q, %v; want %q, %q", tt.file, tt.listen, got, err, tt.want, tt.err)
			}
		})
	}
	// Not loopback: generated once into data_dir, 0600, then reused.
	gen, src, err := api.ResolveToken("", dir, ":8080")
	if err != nil || len(gen) != 64 || src != filepath.Join(dir, api.TokenFileName) {
		t.Fatalf("generated = %q from %q, %v", gen, src, err)
	}
	if st, err := os.Stat(src); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode: %v %v", st, err)
	}
	again, _, err := api.ResolveToken("", dir, "192.168.1.10:8080")
	if err != nil || again != gen {
		t.Fatalf("second start token %q, %v; want the same %q", again, err, gen)
	}
}

func TestServer_unwiredSources(t *testing.T) {
	s := httptest.NewServer(api.New(api.Options{}))
	defer s.Close()
	for _, p := range []string{"/api/v1/sensors", "/api/v1/sensors/x", "/api/v1/sensors/x/readings", "/api/v1/alerts"} {
		resp, err := http.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("GET %s without a source = %d; want 503", p, resp.StatusCode)
		}
	}
	resp, err := http.Post(s.URL+"/api/v1/readings", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("POST readings without ingest = %d; want 503", resp.StatusCode)
	}
}

var _ = errors.New
