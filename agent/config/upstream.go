package config

import (
	"strings"
	"time"
)

// UpstreamConfig is the uplink that forwards alerts to an upstream broker.
type UpstreamConfig struct {
	URL            string        `yaml:"url"` // empty: no uplink
	ClientID       string        `yaml:"client_id"`
	Username       string        `yaml:"username"`
	PasswordFile   string        `yaml:"password_file"`
	CAFile         string        `yaml:"ca_file"`
	CertFile       string        `yaml:"cert_file"`
	KeyFile        string        `yaml:"key_file"`
	TopicPrefix    string        `yaml:"topic_prefix"`
	QoS            int           `yaml:"qos"`
	KeepAlive      time.Duration `yaml:"keepalive"`
	OutboxMaxBytes ByteSize      `yaml:"outbox_max_bytes"`
	OutboxMaxAge   time.Duration `yaml:"outbox_max_age"`
	Forward        []string      `yaml:"forward"`

	// ConnectTimeout bounds one connection attempt (TCP, TLS, CONNACK).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// AckTimeout: when the oldest publish waits longer than this for its
	// PUBACK, the link is judged stalled and recycled.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxInflight is the window of publishes awaiting PUBACK.
	MaxInflight int `yaml:"max_inflight"`
	// BackoffMin and BackoffMax bound the exponential backoff (with jitter)
	// between connection attempts.
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
}

func defaultUpstream() UpstreamConfig {
	return UpstreamConfig{
		TopicPrefix:    "edgeagent",
		QoS:            1,
		KeepAlive:      30 * time.Second,
		OutboxMaxBytes: 64 << 20,
		OutboxMaxAge:   168 * time.Hour,
		Forward:        []string{"alerts", "status"},
		ConnectTimeout: 10 * time.Second,
		AckTimeout:     10 * time.Second,
		MaxInflight:    128,
		BackoffMin:     500 * time.Millisecond,
		BackoffMax:     60 * time.Second,
	}
}

func (u *UpstreamConfig) validate(add addFunc) {
	checkBrokerURL(add, "upstream.url", u.URL, true)
	if u.QoS != 1 {
		add("upstream.qos", "%d: only 1 is supported (alerts need acknowledgements)", u.QoS)
	}
	if u.TopicPrefix == "" {
		add("upstream.topic_prefix", "must not be empty")
	} else if err := ValidTopicFilter(u.TopicPrefix); err != nil || strings.ContainsAny(u.TopicPrefix, "+#") {
		add("upstream.topic_prefix", "%q must be a topic without wildcards", u.TopicPrefix)
	}
	if u.ClientID != "" && len(u.ClientID) > 65535 {
		add("upstream.client_id", "longer than 65535 bytes")
	}
	if (u.CertFile == "") != (u.KeyFile == "") {
		add("upstream.cert_file", "cert_file and key_file must be set together")
	}
	seen := map[string]bool{}
	for i, f := range u.Forward {
		switch f {
		case "alerts", "status", "rollups":
		default:
			add("upstream.forward", "item %d: %q is not one of alerts, status, rollups", i, f)
		}
		if seen[f] {
			add("upstream.forward", "item %d: %q is listed twice", i, f)
		}
		seen[f] = true
	}
	if u.URL != "" && !seen["alerts"] {
		add("upstream.forward", "must include alerts")
	}
	if u.KeepAlive < time.Second {
		add("upstream.keepalive", "%v must be at least 1s", u.KeepAlive)
	}
	if u.ConnectTimeout < 100*time.Millisecond {
		add("upstream.connect_timeout", "%v must be at least 100ms", u.ConnectTimeout)
	}
	if u.AckTimeout < 100*time.Millisecond {
		add("upstream.ack_timeout", "%v must be at least 100ms", u.AckTimeout)
	}
	if u.MaxInflight < 1 || u.MaxInflight > 65535 {
		add("upstream.max_inflight", "%d must be between 1 and 65535", u.MaxInflight)
	}
	if u.BackoffMin <= 0 {
		add("upstream.backoff_min", "%v must be positive", u.BackoffMin)
	}
	if u.BackoffMax < u.BackoffMin {
		add("upstream.backoff_max", "%v must be at least backoff_min (%v)", u.BackoffMax, u.BackoffMin)
	}
	if u.OutboxMaxBytes < 1<<20 {
		add("upstream.outbox_max_bytes", "%d must be at least 1MiB", u.OutboxMaxBytes)
	}
	if u.OutboxMaxAge < time.Minute {
		add("upstream.outbox_max_age", "%v must be at least 1m", u.OutboxMaxAge)
	}
}
