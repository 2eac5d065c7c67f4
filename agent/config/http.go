package config

import (
	"net/url"
	"strconv"
	"time"
)

// HTTPConfig is the local API, web view and metrics listener.
type HTTPConfig struct {
	Listen string `yaml:"listen"` // "" turns HTTP off
	// TokenFile holds the API token. Empty: no token on a loopback listener;
	// on any other listener a token is generated into data_dir/http.token.
	TokenFile   string `yaml:"token_file"`
	OpenMetrics bool   `yaml:"open_metrics"` // /metrics without the token
	// Pprof serves Go's profiler under /debug/pprof/ (with the token, if any):
	// off by default, for measuring a gateway under load.
	Pprof        bool          `yaml:"pprof"`
	CORSOrigins  []string      `yaml:"cors_origins"` // exact origins, e.g. "http://grafana.lan:3000"; empty: CORS off
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	MaxBody      ByteSize      `yaml:"max_body"`
	// RawMaxRange: longer /readings ranges are answered from 1-minute rollups.
	RawMaxRange time.Duration `yaml:"raw_max_range"`
	// WSRate is the default readings per second per sensor on /ws; WSMaxRate caps ?rate=.
	WSRate    float64 `yaml:"ws_rate"`
	WSMaxRate float64 `yaml:"ws_max_rate"`
	// WSBuffer is the messages queued per WebSocket client before it is dropped as too slow.
	WSBuffer int `yaml:"ws_buffer"`
}

func defaultHTTP() HTTPConfig {
	return HTTPConfig{
		Listen:       "127.0.0.1:8080",
		OpenMetrics:  true,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 30 * time.Second,
		MaxBody:      1 << 20,
		RawMaxRange:  time.Hour,
		WSRate:       2,
		WSMaxRate:    50,
		WSBuffer:     256,
	}
}

func (h *HTTPConfig) validate(add addFunc) {
	checkAddr(add, "http.listen", h.Listen)
	if h.ReadTimeout <= 0 {
		add("http.read_timeout", "must be positive")
	}
	if h.MaxBody < 1024 {
		add("http.max_body", "%d bytes is too small", h.MaxBody)
	}
	for i, o := range h.CORSOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			add("http.cors_origins["+strconv.Itoa(i)+"]", "%q must be an origin like https://host:port", o)
		}
	}
	if h.RawMaxRange < time.Minute {
		add("http.raw_max_range", "%v must be at least 1m", h.RawMaxRange)
	}
	if !(h.WSMaxRate > 0) || h.WSMaxRate > 1000 {
		add("http.ws_max_rate", "%g must be above 0 and at most 1000", h.WSMaxRate)
	}
	if !(h.WSRate > 0) || h.WSRate > h.WSMaxRate {
		add("http.ws_rate", "%g must be above 0 and at most ws_max_rate (%g)", h.WSRate, h.WSMaxRate)
	}
	if h.WSBuffer < 16 || h.WSBuffer > 65536 {
		add("http.ws_buffer", "%d must be between 16 and 65536", h.WSBuffer)
	}
}
