package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeagent/edgeagent/agent"
)

// Sensors is the live view of the pipeline; *agent.Pipeline implements it.
type Sensors interface {
	// Sensors returns every known sensor, sorted by id.
	Sensors(ctx context.Context) ([]agent.SensorInfo, error)
	// Inspect runs fn on the goroutine that owns sensor; ErrNotFound when unknown.
	Inspect(ctx context.Context, sensor string, fn func(info agent.SensorInfo, st agent.Stage)) error
}

// Rollup is one aggregated interval of a sensor's readings.
type Rollup struct {
	Start time.Time
	Count int
	Min   float64
	Max   float64
	Mean  float64
	Last  float64
}

// History is the stored raw series of sensors; *storage.DB implements it.
type History interface {
	// Results returns the results of sensor with from <= Time < to, oldest
	// first (desc: newest first), at most limit. An unknown sensor yields
	// none, not an error.
	Results(sensor string, from, to time.Time, limit int, desc bool) ([]agent.Result, error)
}

// RollupsFunc returns the 1-minute rollups of sensor starting in [from, to),
// oldest first, at most limit.
type RollupsFunc func(sensor string, from, to time.Time, limit int) ([]Rollup, error)

// AlertQuery selects alerts. Zero fields do not filter.
type AlertQuery struct {
	State  agent.AlertState // the incident's latest state
	Sensor string
	Since  time.Time // incidents that started at or after Since
	Limit  int
	Cursor string // opaque, from the previous page
}

// AlertStore lists stored incidents (the latest transition of each alert
// id), newest start first, with the cursor of the next page ("" on the last).
type AlertStore interface {
	Alerts(ctx context.Context, q AlertQuery) ([]agent.Alert, string, error)
}

// Ingester takes a message through the same path as MQTT; *agent.Intake implements it.
type Ingester interface {
	Ingest(ctx context.Context, m agent.Message) error
}

// AlertsFunc adapts a function to AlertStore.
type AlertsFunc func(ctx context.Context, q AlertQuery) ([]agent.Alert, string, error)

// Alerts calls f.
func (f AlertsFunc) Alerts(ctx context.Context, q AlertQuery) ([]agent.Alert, string, error) {
	return f(ctx, q)
}

// DetectorView is one detector of a sensor in GET /api/v1/sensors/{id}.
type DetectorView struct {
	Name     string         `json:"name"`
	Type     string         `json:"type"`
	Score    float64        `json:"score"`
	Band     *[2]float64    `json:"band,omitempty"` // [lo, hi] expected; absent without a baseline
	Baseline agent.Baseline `json:"baseline"`
	Reason   string         `json:"reason,omitempty"`
	State    string         `json:"state"` // ok, pending, firing, flapping
	AlertID  string         `json:"alert_id,omitempty"`
	Since    time.Time      `json:"since,omitzero"`
}

// StatusExtra are the figures of /api/v1/status that come from other parts.
type StatusExtra struct {
	MQTTClients int          `json:"mqtt_clients"`
	Uplink      UplinkStatus `json:"uplink"`
	Outbox      OutboxStatus `json:"outbox"`
	DBSize      int64        `json:"db_bytes"`
	Ingest      IngestStatus `json:"ingest"`
}

// IngestStatus tells what the decoders could not map, so nobody has to guess
// why a device's values are missing.
type IngestStatus struct {
	// UnsupportedTemplates are Home Assistant value templates the agent
	// cannot evaluate; their sensors are not created.
	UnsupportedTemplates []UnsupportedTemplate `json:"unsupported_templates"`
	DiscoveredSensors    int                   `json:"discovered_sensors"`
	SparkplugSeqGaps     int64                 `json:"sparkplug_seq_gaps"`
}

// UnsupportedTemplate is one discovery config whose value_template was refused.
type UnsupportedTemplate struct {
	ConfigTopic string `json:"config_topic"`
	Sensor      string `json:"sensor"`
	Template    string `json:"template"`
	Why         string `json:"why"`
}

// UplinkStatus is the state of the upstream connection.
type UplinkStatus struct {
	State     string    `json:"state"` // "disabled", "connected", "connecting", "down"
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// OutboxStatus is the backlog of alerts waiting for the uplink.
type OutboxStatus struct {
	Depth  int64     `json:"depth"`
	Bytes  int64     `json:"bytes"`
	Oldest time.Time `json:"oldest,omitzero"`
}

// Status is the body of GET /api/v1/status.
type Status struct {
	Gateway    string    `json:"gateway"`
	Version    string    `json:"version"`
	StartedAt  time.Time `json:"started_at"`
	UptimeS    float64   `json:"uptime_s"`
	Readings   Counts    `json:"readings"`
	Sensors    int       `json:"sensors"`
	OpenAlerts int       `json:"open_alerts"`
	WSClients  int       `json:"ws_clients"`
	StatusExtra
}

// Counts are the pipeline counters since start.
type Counts struct {
	Received  float64 `json:"received"`
	Processed float64 `json:"processed"`
	Rejected  float64 `json:"rejected"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := Status{
		Gateway: s.opts.Gateway, Version: s.opts.Version, StartedAt: s.opts.Started.UTC(),
		UptimeS:   time.Since(s.opts.Started).Round(time.Second).Seconds(),
		WSClients: s.hub.Clients(),
	}
	st.Uplink.State = "disabled"
	if sp, ok := s.opts.Sensors.(interface{ Stats() agent.Stats }); ok {
		ps := sp.Stats() // *agent.Pipeline: cheap atomic totals
		st.Readings = Counts{Received: float64(ps.Received), Processed: float64(ps.Processed), Rejected: float64(ps.Rejected)}
	} else if s.opts.Gatherer != nil {
		st.Readings = countsFrom(s.opts.Gatherer)
	}
	if s.opts.Sensors != nil {
		infos, err := s.opts.Sensors.Sensors(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		st.Sensors = len(infos)
		for _, in := range infos {
			if in.Alerting {
				st.OpenAlerts++
			}
		}
	}
	if s.opts.Status != nil {
		st.StatusExtra = s.opts.Status(r.Context())
		if st.Uplink.State == "" {
			st.Uplink.State = "disabled"
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// countsFrom sums the pipeline counters out of the metrics registry, so the
// API reports exactly what /metrics says.
func countsFrom(g prometheus.Gatherer) Counts {
	var c Counts
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return c
	}
	sum := func(mf *dto.MetricFamily) (t float64) {
		for _, m := range mf.GetMetric() {
			t += m.GetCounter().GetValue()
		}
		return t
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "edgeagent_readings_received_total":
			c.Received = sum(mf)
		case "edgeagent_readings_processed_total":
			c.Processed = sum(mf)
		case "edgeagent_readings_rejected_total":
			c.Rejected = sum(mf)
		}
	}
	return c
}

// sensorSorts are the keys of ?sort=; a leading "-" reverses.
var sensorSorts = map[string]func(a, b *agent.SensorInfo) int{
	"id": func(a, b *agent.SensorInfo) int { return strings.Compare(a.ID, b.ID) },
	"kind": func(a, b *agent.SensorInfo) int {
		return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.ID, b.ID))
	},
	"time":  func(a, b *agent.SensorInfo) int { return a.Time.Compare(b.Time) },
	"value": func(a, b *agent.SensorInfo) int { return cmp.Compare(a.Value, b.Value) },
	"rate":  func(a, b *agent.SensorInfo) int { return cmp.Compare(a.Rate, b.Rate) },
	"score": func(a, b *agent.SensorInfo) int { return cmp.Compare(a.Score, b.Score) },
	"alerting": func(a, b *agent.SensorInfo) int {
		return cmp.Or(boolCmp(a.Alerting, b.Alerting), cmp.Compare(a.Score, b.Score))
	},
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// SensorList is the body of GET /api/v1/sensors.
type SensorList struct {
	Sensors []agent.SensorInfo `json:"sensors"`
	Total   int                `json:"total"` // known sensors before filtering
}

func (s *Server) sensors(w http.ResponseWriter, r *http.Request) {
	if s.opts.Sensors == nil {
		writeError(w, unavailable("sensors"))
		return
	}
	q := r.URL.Query()
	if err := onlyParams(q, "kind", "alerting", "q", "sort", "limit"); err != nil {
		writeError(w, err)
		return
	}
	var alerting *bool
	if v := q.Get("alerting"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, badParam("alerting", "%q is not true or false", v))
			return
		}
		alerting = &b
	}
	sortKey, desc := strings.CutPrefix(q.Get("sort"), "-")
	if sortKey == "" {
		sortKey = "id"
	}
	less, ok := sensorSorts[sortKey]
	if !ok {
		writeError(w, badParam("sort", "%q is not one of id, kind, time, value, rate, score, alerting (prefix - to reverse)", q.Get("sort")))
		return
	}
	limit, err := s.limit(q, s.opts.MaxLimit)
	if err != nil {
		writeError(w, err)
		return
	}
	all, err := s.opts.Sensors.Sensors(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]agent.SensorInfo, 0, len(all))
	kind, prefix := q.Get("kind"), q.Get("q")
	for _, in := range all {
		if (kind != "" && in.Kind != kind) || (alerting != nil && in.Alerting != *alerting) ||
			!strings.HasPrefix(in.ID, prefix) {
			continue
		}
		out = append(out, in)
	}
	slices.SortStableFunc(out, func(a, b agent.SensorInfo) int {
		if desc {
			return less(&b, &a)
		}
		return less(&a, &b)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, SensorList{Sensors: out, Total: len(all)})
}

// SensorDetail is the body of GET /api/v1/sensors/{id}.
type SensorDetail struct {
	agent.SensorInfo
	// Detectors is the stage's per-detector state and band (DetectorState).
	Detectors []DetectorView `json:"detectors,omitempty"`
	// OpenAlerts are the sensor's firing or flapping incidents.
	OpenAlerts []agent.Alert `json:"open_alerts"`
}

func (s *Server) sensor(w http.ResponseWriter, r *http.Request) {
	if s.opts.Sensors == nil {
		writeError(w, unavailable("sensors"))
		return
	}
	id := r.PathValue("id")
	var d SensorDetail
	err := s.opts.Sensors.Inspect(r.Context(), id, func(info agent.SensorInfo, st agent.Stage) {
		d.SensorInfo = info
		if s.opts.DetectorState != nil && st != nil {
			d.Detectors = s.opts.DetectorState(st, id)
		}
	})
	if err != nil {
		if errors.Is(err, agent.ErrNotFound) {
			err = &Error{Status: http.StatusNotFound, Msg: "sensor " + strconv.Quote(id) + " not found", Field: "id"}
		}
		writeError(w, err)
		return
	}
	d.OpenAlerts = []agent.Alert{}
	if s.opts.Alerts != nil {
		as, _, err := s.opts.Alerts.Alerts(r.Context(), AlertQuery{Sensor: id, Limit: 100})
		if err != nil {
			writeError(w, err)
			return
		}
		for _, a := range as {
			if a.State == agent.AlertFiring || a.State == agent.AlertFlapping || a.State == agent.AlertPending {
				d.OpenAlerts = append(d.OpenAlerts, a)
			}
		}
	}
	writeJSON(w, http.StatusOK, d)
}

// Point is one raw reading in a Series; times are Unix milliseconds.
type Point struct {
	T     int64       `json:"t"`
	V     float64     `json:"v"`
	Score float64     `json:"score,omitempty"`
	Band  *[2]float64 `json:"band,omitempty"` // [lo, hi] expected by the detectors
}

// RollupPoint is one interval in a Series.
type RollupPoint struct {
	T    int64   `json:"t"` // interval start, Unix ms
	N    int64   `json:"n"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	Last float64 `json:"last"`
}

// Series is the body of GET /api/v1/sensors/{id}/readings.
type Series struct {
	Sensor     string        `json:"sensor"`
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Resolution string        `json:"resolution"` // "raw" or "rollup"
	Step       string        `json:"step,omitempty"`
	Truncated  bool          `json:"truncated"` // limit reached before to
	Points     []Point       `json:"points,omitempty"`
	Rollups    []RollupPoint `json:"rollups,omitempty"`
}

func (s *Server) readings(w http.ResponseWriter, r *http.Request) {
	if s.opts.History == nil {
		writeError(w, unavailable("history"))
		return
	}
	q := r.URL.Query()
	if err := onlyParams(q, "from", "to", "limit", "resolution", "order"); err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	to, err := parseTime(q, "to", now)
	if err != nil {
		writeError(w, err)
		return
	}
	from, err := parseTime(q, "from", to.Add(-15*time.Minute))
	if err != nil {
		writeError(w, err)
		return
	}
	if !from.Before(to) {
		writeError(w, badParam("from", "must be before to (%s)", to.Format(time.RFC3339)))
		return
	}
	limit, err := s.limit(q, s.opts.MaxLimit)
	if err != nil {
		writeError(w, err)
		return
	}
	res := q.Get("resolution")
	switch res {
	case "":
		res = "raw"
		if to.Sub(from) > s.opts.RawMaxRange {
			res = "rollup"
		}
	case "raw", "rollup":
	default:
		writeError(w, badParam("resolution", "%q is not raw or rollup", res))
		return
	}
	if res == "rollup" && s.opts.Rollups == nil {
		writeError(w, unavailable("rollups"))
		return
	}
	var desc bool
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		desc = true
	default:
		writeError(w, badParam("order", "%q is not asc or desc", q.Get("order")))
		return
	}
	id := r.PathValue("id")
	out := Series{Sensor: id, From: from.UTC(), To: to.UTC(), Resolution: res}
	if res == "raw" {
		// With the default ascending order a truncated answer would hold the
		// oldest readings of the range; a chart wants the newest, so fetch
		// them newest first and reverse.
		rs, err := s.opts.History.Results(id, from, to, limit+1, true)
		if err != nil {
			writeError(w, err)
			return
		}
		if len(rs) > limit {
			rs, out.Truncated = rs[:limit], true
		}
		if !desc {
			slices.Reverse(rs)
		}
		out.Points = make([]Point, len(rs))
		for i, x := range rs {
			p := Point{T: x.Time.UnixMilli(), V: x.Value, Score: x.Score}
			if x.Band != (agent.Band{}) {
				p.Band = &[2]float64{x.Band.Lo, x.Band.Hi}
			}
			out.Points[i] = p
		}
	} else {
		out.Step = "1m"
		rs, err := s.opts.Rollups(id, from, to, limit+1)
		if err != nil {
			writeError(w, err)
			return
		}
		if len(rs) > limit {
			rs, out.Truncated = rs[:limit], true
		}
		out.Rollups = make([]RollupPoint, len(rs))
		for i, x := range rs {
			out.Rollups[i] = RollupPoint{T: x.Start.UnixMilli(), N: int64(x.Count), Min: x.Min, Max: x.Max, Mean: x.Mean, Last: x.Last}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// AlertPage is the body of GET /api/v1/alerts.
type AlertPage struct {
	Alerts []agent.Alert `json:"alerts"`
	// Next is the cursor of the following page (pass it as ?cursor=); empty on the last page.
	Next string `json:"next,omitempty"`
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	if s.opts.Alerts == nil {
		writeError(w, unavailable("alerts"))
		return
	}
	q := r.URL.Query()
	if err := onlyParams(q, "state", "sensor", "since", "limit", "cursor"); err != nil {
		writeError(w, err)
		return
	}
	aq := AlertQuery{State: agent.AlertState(q.Get("state")), Sensor: q.Get("sensor"), Cursor: q.Get("cursor")}
	switch aq.State {
	case "", agent.AlertPending, agent.AlertFiring, agent.AlertResolved, agent.AlertFlapping:
	default:
		writeError(w, badParam("state", "%q is not one of pending, firing, resolved, flapping", aq.State))
		return
	}
	var err error
	if q.Has("since") {
		if aq.Since, err = parseTime(q, "since", time.Time{}); err != nil {
			writeError(w, err)
			return
		}
	}
	if aq.Limit, err = s.limit(q, 1000); err != nil {
		writeError(w, err)
		return
	}
	if q.Get("limit") == "" {
		aq.Limit = 100
	}
	as, next, err := s.opts.Alerts.Alerts(r.Context(), aq)
	if err != nil {
		if aq.Cursor != "" && errors.Is(err, agent.ErrNotFound) {
			err = badParam("cursor", "unknown or malformed cursor")
		}
		writeError(w, err)
		return
	}
	if as == nil {
		as = []agent.Alert{}
	}
	writeJSON(w, http.StatusOK, AlertPage{Alerts: as, Next: next})
}

// IngestItem is one element of the POST /api/v1/readings body: an MQTT
// topic and its payload. A JSON string payload is passed as its text (for
// plain-number codecs); any other JSON value is passed as its JSON bytes.
type IngestItem struct {
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
}

// IngestResult is the outcome of one item.
type IngestResult struct {
	Index    int    `json:"index"`
	Readings int    `json:"readings"` // readings decoded and committed
	Error    string `json:"error,omitempty"`
	Field    string `json:"field,omitempty"` // "topic" or "payload"
}

// IngestResponse is the body of POST /api/v1/readings.
type IngestResponse struct {
	Accepted int            `json:"accepted"` // readings committed
	Errors   int            `json:"errors"`   // items with an error
	Items    []IngestResult `json:"items"`
}

func (s *Server) postReadings(w http.ResponseWriter, r *http.Request) {
	if s.opts.Decoder == nil || s.opts.Ingester == nil {
		writeError(w, unavailable("ingest"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Msg: sprintf("body larger than %d bytes", mbe.Limit), Field: "body"})
			return
		}
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: "reading body: " + err.Error(), Field: "body"})
		return
	}
	var items []IngestItem
	body = bytes.TrimSpace(body)
	switch {
	case len(body) == 0:
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: "empty body", Field: "body"})
		return
	case body[0] == '[':
		err = strictUnmarshal(body, &items)
	default:
		var one IngestItem
		err = strictUnmarshal(body, &one)
		items = []IngestItem{one}
	}
	if err != nil {
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: "invalid JSON: " + err.Error(), Field: "body"})
		return
	}
	if len(items) == 0 {
		writeError(w, &Error{Status: http.StatusBadRequest, Msg: "empty batch", Field: "body"})
		return
	}
	resp := IngestResponse{Items: make([]IngestResult, len(items))}
	code := http.StatusOK
	now := time.Now()
	for i, it := range items {
		res := &resp.Items[i]
		res.Index = i
		fail := func(field string, err error) {
			res.Error, res.Field = err.Error(), field
			resp.Errors++
		}
		if it.Topic == "" {
			fail("topic", errors.New("missing topic"))
			continue
		}
		if len(it.Payload) == 0 {
			fail("payload", errors.New("missing payload"))
			continue
		}
		payload := []byte(it.Payload)
		if payload[0] == '"' {
			var str string
			if err := json.Unmarshal(payload, &str); err == nil {
				payload = []byte(str)
			}
		}
		// Validate with the same decoder first to report per-item errors;
		// Ingest then decodes again, counts and submits.
		rs, derr := s.opts.Decoder.Decode(it.Topic, payload, now, nil)
		if errors.Is(derr, agent.ErrUnmatched) {
			fail("topic", derr)
			continue
		}
		if len(rs) == 0 {
			if derr == nil {
				derr = errors.New("payload holds no readings")
			}
			fail("payload", derr)
			continue
		}
		err := s.opts.Ingester.Ingest(r.Context(), agent.Message{Topic: it.Topic, Payload: payload, ClientID: "http", Durable: true})
		if err != nil {
			fail("", err)
			if e := statusOf(err); e.Status > code {
				code = e.Status
			}
			continue
		}
		res.Readings = len(rs)
		resp.Accepted += len(rs)
		if derr != nil { // some items of a multi-reading payload were rejected
			res.Error, res.Field = derr.Error(), "payload"
			resp.Errors++
		}
	}
	if resp.Accepted == 0 && code == http.StatusOK {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, resp)
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// onlyParams rejects unknown query parameters, so a typo is an error and not
// a silently ignored filter.
func onlyParams(q map[string][]string, allowed ...string) error {
	for k := range q {
		if !slices.Contains(allowed, k) {
			return badParam(k, "unknown parameter (allowed: %s)", strings.Join(allowed, ", "))
		}
	}
	return nil
}

// limit parses ?limit=, 1..max; absent means max.
func (s *Server) limit(q map[string][]string, max int) (int, error) {
	v := ""
	if l := q["limit"]; len(l) > 0 {
		v = l[0]
	}
	if v == "" {
		return max, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, badParam("limit", "%q must be an integer from 1 to %d", v, max)
	}
	return n, nil
}

// parseTime reads parameter name as RFC 3339 or Unix milliseconds; absent means def.
func parseTime(q map[string][]string, name string, def time.Time) (time.Time, error) {
	v := ""
	if l := q[name]; len(l) > 0 {
		v = l[0]
	}
	if v == "" {
		return def, nil
	}
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 || ms > 1<<53 {
			return time.Time{}, badParam(name, "%q is out of range for Unix milliseconds", v)
		}
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badParam(name, "%q is neither RFC 3339 (2026-01-02T15:04:05Z) nor Unix milliseconds", v)
	}
	return t, nil
}
