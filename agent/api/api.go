// Package api serves edgeagent's local HTTP interface on one http.ServeMux:
// health and readiness, Prometheus metrics, and (as it grows) the JSON API,
// the live WebSocket stream and the embedded web view.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check: nil means healthy.
type Check func() error

// Options configures the Server. The zero value serves /healthz and an
// always-ready /readyz.
type Options struct {
	// Checks run on every /readyz request, by name.
	Checks   map[string]Check
	Gatherer prometheus.Gatherer // nil: no /metrics
	Logger   *slog.Logger        // nil discards
}

// Server is the HTTP handler of the agent.
type Server struct {
	opts Options
	mux  *http.ServeMux
}

// New returns a Server with every route registered.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// ReadyStatus is the body of /readyz.
type ReadyStatus struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"` // name -> "ok" or the failure
	Failed []string          `json:"failed,omitempty"`
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
