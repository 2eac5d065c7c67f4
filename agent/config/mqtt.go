package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// MQTTConfig selects the embedded broker or an external one.
type MQTTConfig struct {
	Embedded       bool          `yaml:"embedded"`
	Listen         string        `yaml:"listen"`
	TLSListen      string        `yaml:"tls_listen"`
	TLSCert        string        `yaml:"tls_cert"`
	TLSKey         string        `yaml:"tls_key"`
	WSListen       string        `yaml:"ws_listen"`
	AllowAnonymous bool          `yaml:"allow_anonymous"`
	Users          []MQTTUser    `yaml:"users"`
	MaxClients     int           `yaml:"max_clients"`
	MaxPacket      ByteSize      `yaml:"max_packet"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	AckTimeout     time.Duration `yaml:"ack_timeout"`
	External       ExternalMQTT  `yaml:"external"`
}

// MQTTUser is one broker account with a bcrypt password hash and the topic
// filters it may publish and subscribe to. Everything else is denied.
type MQTTUser struct {
	Username     string   `yaml:"username"`
	PasswordHash string   `yaml:"password_hash"`
	Publish      []string `yaml:"publish"`
	Subscribe    []string `yaml:"subscribe"`
}

// ExternalMQTT is the broker already on the gateway, used when embedded is false.
type ExternalMQTT struct {
	URL          string   `yaml:"url"`
	ClientID     string   `yaml:"client_id"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	Topics       []string `yaml:"topics"`
	QoS          int      `yaml:"qos"`
}

func defaultMQTT() MQTTConfig {
	return MQTTConfig{
		Embedded:       true,
		Listen:         "127.0.0.1:1883",
		AllowAnonymous: true,
		MaxClients:     1024,
		MaxPacket:      64 << 10,
		ConnectTimeout: 5 * time.Second,
		AckTimeout:     2 * time.Second,
		External: ExternalMQTT{
			URL:    "tcp://127.0.0.1:1883",
			Topics: []string{"sensors/#"},
			QoS:    1,
		},
	}
}

func (m *MQTTConfig) validate(add addFunc) {
	if m.Embedded {
		if m.Listen == "" && m.TLSListen == "" && m.WSListen == "" {
			add("mqtt.listen", "no listener: set listen, tls_listen or ws_listen")
		}
		checkAddr(add, "mqtt.listen", m.Listen)
		checkAddr(add, "mqtt.tls_listen", m.TLSListen)
		checkAddr(add, "mqtt.ws_listen", m.WSListen)
		if m.TLSListen != "" && (m.TLSCert == "" || m.TLSKey == "") {
			add("mqtt.tls_listen", "needs tls_cert and tls_key")
		}
		if !m.AllowAnonymous && len(m.Users) == 0 {
			add("mqtt.users", "allow_anonymous is false and no users are listed: nobody could connect")
		}
	} else {
		checkBrokerURL(add, "mqtt.external.url", m.External.URL, false)
		if len(m.External.Topics) == 0 {
			add("mqtt.external.topics", "must list at least one topic filter")
		}
		for i, f := range m.External.Topics {
			if err := ValidTopicFilter(f); err != nil {
				add(fmt.Sprintf("mqtt.external.topics[%d]", i), "%v", err)
			}
		}
		if m.External.QoS < 0 || m.External.QoS > 1 {
			add("mqtt.external.qos", "%d must be 0 or 1", m.External.QoS)
		}
	}
	seen := map[string]bool{}
	for i, u := range m.Users {
		key := fmt.Sprintf("mqtt.users[%d]", i)
		if u.Username == "" {
			add(key+".username", "must not be empty")
		} else if seen[u.Username] {
			add(key+".username", "%q is listed twice", u.Username)
		}
		seen[u.Username] = true
		if !strings.HasPrefix(u.PasswordHash, "$2") {
			add(key+".password_hash", "must be a bcrypt hash ($2a$/$2b$/$2y$...); make one with `edgeagent passwd`")
		}
		for j, f := range u.Publish {
			if err := ValidTopicFilter(f); err != nil {
				add(fmt.Sprintf("%s.publish[%d]", key, j), "%v", err)
			}
		}
		for j, f := range u.Subscribe {
			if err := ValidTopicFilter(f); err != nil {
				add(fmt.Sprintf("%s.subscribe[%d]", key, j), "%v", err)
			}
		}
	}
	if m.MaxClients < 1 {
		add("mqtt.max_clients", "%d must be at least 1", m.MaxClients)
	}
	if m.MaxPacket < 256 || m.MaxPacket > 256<<20 {
		add("mqtt.max_packet", "%d bytes must be between 256 B and 256 MB", m.MaxPacket)
	}
	if m.ConnectTimeout <= 0 {
		add("mqtt.connect_timeout", "must be positive")
	}
	if m.AckTimeout <= 0 || m.AckTimeout > 10*time.Second {
		add("mqtt.ack_timeout", "%v must be between 0 and 10s (well under a client's keepalive)", m.AckTimeout)
	}
}

// checkAddr validates host:port; an empty addr is allowed (listener off).
func checkAddr(add addFunc, key, addr string) {
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			add(key, "missing port in %q", addr)
		} else {
			add(key, "%q is not host:port: %v", addr, err)
		}
		return
	}
	if port == "" {
		add(key, "missing port in %q", addr)
	}
}

// checkBrokerURL validates tcp://, ssl://, ws:// and wss:// URLs.
func checkBrokerURL(add addFunc, key, raw string, allowEmpty bool) {
	if raw == "" {
		if !allowEmpty {
			add(key, "must not be empty")
		}
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		add(key, "%v", err)
		return
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		add(key, "scheme %q must be tcp, ssl, ws or wss", u.Scheme)
		return
	}
	if u.Host == "" {
		add(key, "missing host in %q", raw)
	} else if u.Port() == "" && u.Scheme != "ws" && u.Scheme != "wss" {
		add(key, "missing port in %q", raw)
	}
}

// ValidTopicFilter reports whether f is a legal MQTT topic filter.
func ValidTopicFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic filter %q: '#' must be a whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic filter %q: '+' must be a whole level", f)
		}
	}
	return nil
}

func validTopicLevel(s string) bool { return !strings.ContainsAny(s, "/+#") }
