// Package api serves edgeagent's local HTTP interface on one http.ServeMux:
// health and readiness, Prometheus metrics, the JSON API under /api/v1, the
// live WebSocket stream /ws and the embedded web view /.
//
// The package declares the small interfaces it consumes (Sensors, History,
// AlertStore, Ingester); cmd/edgeagent passes the real parts.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgeagent/edgeagent/agent"
)

// Check is one readiness check: nil means healthy.
type Check func() error

// Options configures the Server. The zero value serves /healthz, an
// always-ready /readyz, the web page, and answers 503 on every /api/v1
// endpoint whose source is nil. Defaults live in ensureDefaults.
type Options struct {
	// Checks run on every /readyz request, by name.
	Checks map[string]Check
	// Notes are reported in /readyz like checks but never make the agent
	// not-ready: the uplink is down for hours on a healthy gateway.
	Notes      map[string]Check
	Gatherer   prometheus.Gatherer   // nil: no /metrics; also the source of the status counters
	Registerer prometheus.Registerer // nil registers no API metrics
	Logger     *slog.Logger          // nil discards

	Gateway string    // shown in /api/v1/status
	Version string    // shown in /api/v1/status
	Started time.Time // process start for uptime; zero means when New ran

	Sensors  Sensors     // nil: sensor endpoints answer 503
	History  History     // nil: readings endpoint answers 503
	Rollups  RollupsFunc // nil: long ranges answer 503
	Alerts   AlertStore  // nil: alerts endpoint answers 503
	Decoder  agent.Decoder
	Ingester Ingester // with Decoder: POST /api/v1/readings; either nil: 503
	// DetectorState, when set, is called on the shard goroutine that owns
	// sensor (inside Sensors.Inspect) and returns the stage's detectors for
	// GET /api/v1/sensors/{id}.
	DetectorState func(st agent.Stage, sensor string) []DetectorView
	// Status, when set, gives the figures the API cannot see itself (MQTT
	// clients, uplink, outbox, database size).
	Status func(ctx context.Context) StatusExtra

	// Token protects every endpoint except /healthz and /readyz (and /metrics
	// when OpenMetrics). Empty: no authentication (loopback listener).
	Token       string
	OpenMetrics bool
	// Pprof serves net/http/pprof under /debug/pprof/, behind the token.
	Pprof bool
	// CORSOrigins are the exact origins ("https://grafana.lan:3000") allowed
	// cross-origin; empty means CORS is off. Their hosts may also open /ws.
	CORSOrigins []string
	// MaxBody caps request bodies; zero means 1 MiB.
	MaxBody int64
	// WriteTimeout bounds writing one response (set per request, so it never
	// cuts a WebSocket, which lives on). Zero means none.
	WriteTimeout time.Duration
	// RawMaxRange is the longest range answered with raw readings; longer
	// ranges get 1-minute rollups. Zero means 1h.
	RawMaxRange time.Duration
	// MaxLimit caps ?limit= on list endpoints; zero means 10000.
	MaxLimit int
	// Hub is the live stream; nil means New creates one from HubOptions{}
	// with Logger and Registerer. Pass the Hub that is the pipeline's Observer.
	Hub *Hub
}

func (o *Options) ensureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.RawMaxRange <= 0 {
		o.RawMaxRange = time.Hour
	}
	if o.MaxLimit <= 0 {
		o.MaxLimit = 10000
	}
	if o.Hub == nil {
		o.Hub = NewHub(HubOptions{Logger: o.Logger, Registerer: o.Registerer, OriginPatterns: OriginHosts(o.CORSOrigins)})
	}
}

// Server is the HTTP handler of the agent. Close it before the http.Server's
// Shutdown: Shutdown does not wait for hijacked WebSocket connections.
type Server struct {
	opts    Options
	mux     *http.ServeMux
	hub     *Hub
	metrics *httpMetrics
	static  fs.FS
	started time.Time // Last-Modified of the embedded files
}

// New returns a Server with every route registered.
func New(opts Options) *Server {
	opts.ensureDefaults()
	s := &Server{opts: opts, mux: http.NewServeMux(), hub: opts.Hub, metrics: newHTTPMetrics(opts.Registerer)}
	s.static, _ = fs.Sub(webFS, "web") // cannot fail: the directory is embedded
	s.started = time.Now()

	open, auth := s.open, s.auth
	s.mux.HandleFunc("GET /healthz", open(s.healthz))
	s.mux.HandleFunc("GET /readyz", open(s.readyz))
	if opts.Gatherer != nil {
		h := promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})
		if opts.OpenMetrics {
			s.mux.HandleFunc("GET /metrics", open(h.ServeHTTP))
		} else {
			s.mux.HandleFunc("GET /metrics", auth(h.ServeHTTP))
		}
	}
	if opts.Pprof {
		s.mux.HandleFunc("GET /debug/pprof/", auth(pprof.Index))
		s.mux.HandleFunc("GET /debug/pprof/cmdline", auth(pprof.Cmdline))
		s.mux.HandleFunc("GET /debug/pprof/profile", auth(pprof.Profile))
		s.mux.HandleFunc("GET /debug/pprof/symbol", auth(pprof.Symbol))
		s.mux.HandleFunc("GET /debug/pprof/trace", auth(pprof.Trace))
	}
	// The page and its assets carry no data; the token is asked for by the
	// page itself, so they are served without it.
	s.mux.HandleFunc("GET /{$}", open(s.page))
	s.mux.HandleFunc("GET /static/", open(s.page))
	s.mux.HandleFunc("GET /ws", auth(s.hub.ServeHTTP))
	s.mux.HandleFunc("GET /api/v1/status", auth(s.status))
	s.mux.HandleFunc("GET /api/v1/sensors", auth(s.sensors))
	s.mux.HandleFunc("GET /api/v1/sensors/{id}", auth(s.sensor))
	s.mux.HandleFunc("GET /api/v1/sensors/{id}/readings", auth(s.readings))
	s.mux.HandleFunc("GET /api/v1/alerts", auth(s.alerts))
	s.mux.HandleFunc("POST /api/v1/readings", auth(s.postReadings))
	return s
}

// Hub is the live stream of this server.
func (s *Server) Hub() *Hub { return s.hub }

// Close disconnects every WebSocket client and waits for their goroutines.
func (s *Server) Close() error { return s.hub.Close() }

// ServeHTTP counts the request by status code and routes it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w}
	if s.opts.WriteTimeout > 0 {
		deadline := time.Now().Add(s.opts.WriteTimeout)
		if r.URL.Path == "/ws" {
			deadline = time.Time{} // the hub bounds each write itself
		}
		_ = http.NewResponseController(w).SetWriteDeadline(deadline)
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if origin := r.Header.Get("Origin"); origin != "" && slices.Contains(s.opts.CORSOrigins, origin) {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions && strings.HasPrefix(r.URL.Path, "/api/v1/") {
		s.preflight(rec, r)
	} else if hd, pattern := s.mux.Handler(r); pattern == "" {
		// No route: answer the mux's 404 or 405 (with its Allow header) as JSON.
		probe := &statusProbe{h: http.Header{}}
		hd.ServeHTTP(probe, r)
		if allow := probe.h.Get("Allow"); allow != "" {
			h.Set("Allow", allow)
		}
		writeError(rec, &Error{Status: probe.code, Msg: "no such endpoint: " + r.Method + " " + r.URL.Path})
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	if !rec.hijacked {
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.metrics.count(rec.code)
	}
}

// open wraps a handler that needs no token.
func (s *Server) open(h http.HandlerFunc) http.HandlerFunc { return h }

// auth wraps a handler that needs the token when one is configured. The
// token comes as "Authorization: Bearer T" or, for browser WebSockets that
// cannot set headers, as the subprotocol "token.T" next to "edgeagent.v1".
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.opts.Token == "" {
		return h
	}
	want := []byte(s.opts.Token)
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			got = wsToken(r)
		}
		if got == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeagent"`)
			writeError(w, &Error{Status: http.StatusUnauthorized, Msg: "missing token"})
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgeagent", error="invalid_token"`)
			writeError(w, &Error{Status: http.StatusUnauthorized, Msg: "invalid token"})
			return
		}
		h(w, r)
	}
}

// wsToken finds "token.T" among the offered WebSocket subprotocols.
func wsToken(r *http.Request) string {
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if t, ok := strings.CutPrefix(strings.TrimSpace(p), "token."); ok {
				return t
			}
		}
	}
	return ""
}

// preflight answers CORS preflight requests for listed origins only.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if w.Header().Get("Access-Control-Allow-Origin") == "" {
		writeError(w, &Error{Status: http.StatusForbidden, Msg: "origin not allowed", Field: "Origin"})
		return
	}
	w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
	w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy",
		"default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("Cache-Control", "no-cache")
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	if r.URL.Path == "/" {
		name = "index.html"
	}
	b, err := fs.ReadFile(s.static, name)
	if err != nil {
		writeError(w, &Error{Status: http.StatusNotFound, Msg: "no such file: " + r.URL.Path})
		return
	}
	http.ServeContent(w, r, name, s.started, bytes.NewReader(b))
}

// statusProbe records what the mux would answer for an unrouted request.
type statusProbe struct {
	h    http.Header
	code int
}

func (p *statusProbe) Header() http.Header         { return p.h }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.code = code }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// ReadyStatus is the body of /readyz.
type ReadyStatus struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"` // name -> "ok" or the failure
	Failed []string          `json:"failed,omitempty"`
	Notes  map[string]string `json:"notes,omitempty"` // name -> "ok" or the problem; never fails readiness
}

// Ready runs every check.
func (s *Server) Ready() ReadyStatus {
	st := ReadyStatus{Ready: true, Checks: map[string]string{}}
	for name, check := range s.opts.Checks {
		if err := check(); err != nil {
			st.Ready = false
			st.Checks[name] = err.Error()
			st.Failed = append(st.Failed, name)
		} else {
			st.Checks[name] = "ok"
		}
	}
	sort.Strings(st.Failed)
	for name, note := range s.opts.Notes {
		if st.Notes == nil {
			st.Notes = map[string]string{}
		}
		st.Notes[name] = "ok"
		if err := note(); err != nil {
			st.Notes[name] = err.Error()
		}
	}
	return st
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.Ready()
	code := http.StatusOK
	if !st.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, st)
}

// Error is the JSON error body: {"error": "...", "field": "..."}. Field names
// the query parameter, path value or body item the error is about.
type Error struct {
	Status int    `json:"-"`
	Msg    string `json:"error"`
	Field  string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

func badParam(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Msg: sprintf(format, args...), Field: field}
}

// statusOf maps errors from the sources to HTTP statuses, once.
func statusOf(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, agent.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, agent.ErrClosed), errors.Is(err, agent.ErrStorageFailed),
		errors.Is(err, agent.ErrCommitTimedOut), errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Msg: err.Error()}
	case errors.Is(err, agent.ErrInvalidReading), errors.Is(err, agent.ErrTooManySensors):
		return &Error{Status: http.StatusUnprocessableEntity, Msg: err.Error()}
	case errors.Is(err, context.Canceled):
		return &Error{Status: 499, Msg: err.Error()} // client went away; nobody reads it
	}
	return &Error{Status: http.StatusInternalServerError, Msg: err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	e := statusOf(err)
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// unavailable is the error of an endpoint whose source was not wired.
func unavailable(what string) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Msg: what + " not available"}
}
