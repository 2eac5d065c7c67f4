package config

import (
	"strings"
	"testing"
)

func TestParse_httpSection(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		key  string // "" means valid
	}{
		{"http: {ws_rate: 5, ws_max_rate: 10, ws_buffer: 64, raw_max_range: 2h, cors_origins: [\"https://grafana.lan:3000\"]}", ""},
		{"http: {ws_rate: 20, ws_max_rate: 10}", "http.ws_rate"},
		{"http: {ws_rate: 0}", "http.ws_rate"},
		{"http: {ws_max_rate: 5000}", "http.ws_max_rate"},
		{"http: {ws_buffer: 4}", "http.ws_buffer"},
		{"http: {raw_max_range: 10s}", "http.raw_max_range"},
		{"http: {cors_origins: [\"grafana.lan\"]}", "http.cors_origins[0]"},
		{"http: {cors_origins: [\"https://a.lan\", \"https://b.lan/path\"]}", "http.cors_origins[1]"},
	} {
		_, err := Parse([]byte("data_dir: /tmp\n" + tt.yaml))
		if tt.key == "" {
			if err != nil {
				t.Errorf("Parse(%q) = %v; want ok", tt.yaml, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.key+":") {
			t.Errorf("Parse(%q) = %v; want an error naming %s", tt.yaml, err, tt.key)
		}
	}
}
