package config

import "time"

// HTTPConfig is the local API, web view and metrics listener.
type HTTPConfig struct {
	Listen       string        `yaml:"listen"` // "" turns HTTP off
	TokenFile    string        `yaml:"token_file"`
	OpenMetrics  bool          `yaml:"open_metrics"` // /metrics without the token
	CORSOrigins  []string      `yaml:"cors_origins"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	MaxBody      ByteSize      `yaml:"max_body"`
}

func defaultHTTP() HTTPConfig {
	return HTTPConfig{
		Listen:       "127.0.0.1:8080",
		OpenMetrics:  true,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 30 * time.Second,
		MaxBody:      1 << 20,
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
}
