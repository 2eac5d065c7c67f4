package config

import "time"

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
}

func defaultUpstream() UpstreamConfig {
	return UpstreamConfig{
		TopicPrefix:    "edgeagent",
		QoS:            1,
		KeepAlive:      30 * time.Second,
		OutboxMaxBytes: 64 << 20,
		OutboxMaxAge:   168 * time.Hour,
		Forward:        []string{"alerts", "status"},
	}
}

func (u *UpstreamConfig) validate(add addFunc) {
	checkBrokerURL(add, "upstream.url", u.URL, true)
	if u.QoS != 1 {
		add("upstream.qos", "%d: only 1 is supported (alerts need acknowledgements)", u.QoS)
	}
	if u.TopicPrefix == "" {
		add("upstream.topic_prefix", "must not be empty")
	}
	for i, f := range u.Forward {
		switch f {
		case "alerts", "status", "rollups":
		default:
			add("upstream.forward", "item %d: %q is not one of alerts, status, rollups", i, f)
		}
	}
}
