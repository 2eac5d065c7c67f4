package config

import (
	"strings"
	"testing"
	"time"
)

func TestParse_upstream(t *testing.T) {
	cfg, err := Parse([]byte("upstream:\n  url: ssl://broker:8883\n  forward: [alerts, rollups]\n  ack_timeout: 3s\n  max_inflight: 64\n"))
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Upstream
	if u.AckTimeout != 3*time.Second || u.MaxInflight != 64 || u.BackoffMax != time.Minute || u.ConnectTimeout != 10*time.Second {
		t.Errorf("Parse = %+v", u)
	}
	for _, tt := range []struct {
		yaml, key string
	}{
		{"upstream:\n  url: http://x:1\n", "upstream.url"},
		{"upstream:\n  qos: 0\n", "upstream.qos"},
		{"upstream:\n  topic_prefix: a/#\n", "upstream.topic_prefix"},
		{"upstream:\n  cert_file: c.pem\n", "upstream.cert_file"},
		{"upstream:\n  forward: [alerts, alerts]\n", "upstream.forward"},
		{"upstream:\n  url: tcp://x:1\n  forward: [status]\n", "upstream.forward"},
		{"upstream:\n  ack_timeout: 1ms\n", "upstream.ack_timeout"},
		{"upstream:\n  max_inflight: 0\n", "upstream.max_inflight"},
		{"upstream:\n  backoff_min: 2s\n  backoff_max: 1s\n", "upstream.backoff_max"},
		{"upstream:\n  outbox_max_bytes: 1KB\n", "upstream.outbox_max_bytes"},
		{"upstream:\n  keepalive: 0s\n", "upstream.keepalive"},
	} {
		_, err := Parse([]byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.key+":") {
			t.Errorf("Parse(%q) = %v; want an error for %s", tt.yaml, err, tt.key)
		}
	}
}
