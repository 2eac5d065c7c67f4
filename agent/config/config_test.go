package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParse_defaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatalf("Parse(empty) = %v; the defaults must be valid", err)
	}
	if cfg.MQTT.Listen != "127.0.0.1:1883" || cfg.HTTP.Listen != "127.0.0.1:8080" || !cfg.MQTT.Embedded {
		t.Errorf("defaults not loopback/embedded: mqtt %q http %q embedded %v", cfg.MQTT.Listen, cfg.HTTP.Listen, cfg.MQTT.Embedded)
	}
	if cfg.Ingest.MaxSkew != 60*time.Second || cfg.Ingest.MaxPayload != 4096 || cfg.Ingest.MaxSensors != 10000 {
		t.Errorf("ingest defaults = %+v", cfg.Ingest)
	}
	if cfg.GatewayID == "" {
		t.Error("gateway_id default is empty; want the host name")
	}
	if cfg.CPUs != 1 {
		t.Errorf("cpus default = %d; want 1", cfg.CPUs)
	}
}

// TestParse_broken has one broken config per row and the key its error must name.
func TestParse_broken(t *testing.T) {
	for _, tt := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "gateway: gw1\n", "line 1: field gateway not found"},
		{"unknown nested key", "mqtt:\n  listn: \":1883\"\n", "line 2: field listn not found"},
		{"listen without port", "mqtt: {listen: \"localhost\"}\n", "mqtt.listen: missing port"},
		{"bad tls listen", "mqtt: {tls_listen: \"nope\"}\n", "mqtt.tls_listen:"},
		{"tls without cert", "mqtt: {tls_listen: \"127.0.0.1:8883\"}\n", "mqtt.tls_listen: needs tls_cert and tls_key"},
		{"no listener", "mqtt: {listen: \"\"}\n", "mqtt.listen: no listener"},
		{"nobody can connect", "mqtt: {allow_anonymous: false}\n", "mqtt.users: allow_anonymous is false"},
		{"plaintext password", "mqtt: {users: [{username: s1, password_hash: secret}]}\n", "mqtt.users[0].password_hash: must be a bcrypt hash"},
		{"duplicate user", "mqtt: {users: [{username: s1, password_hash: \"$2a$x\"}, {username: s1, password_hash: \"$2a$y\"}]}\n", "mqtt.users[1].username: \"s1\" is listed twice"},
		{"bad publish filter", "mqtt: {users: [{username: s1, password_hash: \"$2a$x\", publish: [\"a/#/b\"]}]}\n", "mqtt.users[0].publish[0]:"},
		{"external without url", "mqtt: {embedded: false, external: {url: \"\"}}\n", "mqtt.external.url: must not be empty"},
		{"external bad scheme", "mqtt: {embedded: false, external: {url: \"http://x:1\"}}\n", "mqtt.external.url: scheme \"http\""},
		{"external no topics", "mqtt: {embedded: false, external: {topics: []}}\n", "mqtt.external.topics: must list"},
		{"ack timeout too long", "mqtt: {ack_timeout: 1m}\n", "mqtt.ack_timeout:"},
		{"packet size", "mqtt: {max_packet: 10}\n", "mqtt.max_packet:"},
		{"bad size unit", "mqtt: {max_packet: 12XB}\n", "line 1:"},
		{"bad duration", "ingest: {max_skew: soon}\n", "soon"},
		{"gateway with slash", "gateway_id: a/b\n", "gateway_id:"},
		{"empty data dir", "data_dir: \"\"\n", "data_dir: must not be empty"},
		{"log level", "log: {level: loud}\n", "log.level: \"loud\""},
		{"log format", "log: {format: xml}\n", "log.format: \"xml\""},
		{"cpus", "cpus: -1\n", "cpus: -1 must be between 0"},
		{"shards", "pipeline: {shards: -1}\n", "pipeline.shards:"},
		{"http listen", "http: {listen: \"8080\"}\n", "http.listen: missing port"},
		{"commit interval", "storage: {commit_interval: 0s}\n", "storage.commit_interval:"},
		{"storage budget", "storage: {max_bytes: 10KB}\n", "storage.max_bytes:"},
		{"upstream scheme", "upstream: {url: \"udp://x:1\"}\n", "upstream.url: scheme \"udp\""},
		{"upstream qos", "upstream: {qos: 0}\n", "upstream.qos:"},
		{"upstream forward", "upstream: {forward: [everything]}\n", "upstream.forward:"},
		{"max sensors", "ingest: {max_sensors: 0}\n", "ingest.max_sensors:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v; want an error containing %q", tt.yaml, err, tt.want)
			}
		})
	}
}

func TestParse_reportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte("log: {level: loud, format: xml}\nhttp: {listen: \"8080\"}\n"))
	for _, key := range []string{"log.level", "log.format", "http.listen"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
}

// TestShippedConfigs: every file in configs/ must load.
func TestShippedConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no configs/*.yaml found")
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("Load(%s) = %v", f, err)
		}
	}
}

func TestMarshal_roundTrip(t *testing.T) {
	cfg, err := Parse([]byte("gateway_id: gw7\nstorage: {max_bytes: 64MB}\nupstream: {url: \"tcp://127.0.0.1:1883\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)) = %v\n%s", err, b)
	}
	if again.GatewayID != "gw7" || again.Storage.MaxBytes != 64<<20 || again.Upstream.URL != cfg.Upstream.URL {
		t.Errorf("round trip lost values:\n%s", b)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"4096": 4096, "64MB": 64 << 20, "512KiB": 512 << 10, "1GB": 1 << 30, "1.5K": 1536} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseByteSize("lots"); err == nil {
		t.Error("ParseByteSize(lots) = nil error")
	}
}

// TestShippedConfigs_documentEveryKey: configs/edgeagent.yaml, the production
// example, names every key of the default configuration.
func TestShippedConfigs_documentEveryKey(t *testing.T) {
	b, err := Default().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../configs/edgeagent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	have := keyPaths(t, example)
	for _, k := range keyPaths(t, b) {
		if !slices.Contains(have, k) {
			t.Errorf("configs/edgeagent.yaml does not document %s", k)
		}
	}
}

// keyPaths lists the mapping keys of a YAML document as dotted paths; list
// items are not descended into.
func keyPaths(t *testing.T, doc []byte) []string {
	t.Helper()
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
			walk(prefix, n.Content[0])
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := prefix + n.Content[i].Value
			out = append(out, k)
			walk(k+".", n.Content[i+1])
		}
	}
	walk("", &root)
	return out
}
