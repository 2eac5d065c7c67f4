package api

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests by status code. Children of the usual codes
// are resolved once; others (bounded by HTTP itself) are looked up on use.
type httpMetrics struct {
	requests *prometheus.CounterVec
	byCode   map[int]prometheus.Counter // read-only after construction
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgeagent_http_requests_total",
			Help: "HTTP requests answered, by status code (WebSocket upgrades are not counted here).",
		}, []string{"code"}),
		byCode: map[int]prometheus.Counter{},
	}
	for _, c := range []int{200, 204, 304, 400, 401, 403, 404, 405, 413, 422, 499, 500, 503} {
		m.byCode[c] = m.requests.WithLabelValues(strconv.Itoa(c))
	}
	if reg != nil {
		reg.MustRegister(m.requests)
	}
	return m
}

func (m *httpMetrics) count(code int) {
	if c, ok := m.byCode[code]; ok {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// recorder remembers the status code; it passes Hijack and Flush through
// so WebSocket upgrades and streaming keep working.
type recorder struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, rw, err
}

func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
