package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/edgeagent/edgeagent/broker"
)

// TestServe_underSystemd runs the built binary as systemd would (Type=notify,
// WatchdogSec=, ExecReload=kill -HUP, stop with SIGTERM) against a real
// NOTIFY_SOCKET and checks the protocol and the reload outcomes.
func TestServe_underSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildAgent(t, "amd64", "")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgeagent.yaml")
	base := fmt.Sprintf("gateway_id: proc-gw\ndata_dir: %s\nhttp: {listen: \"127.0.0.1:0\"}\n", filepath.Join(dir, "data"))
	writeConfig(t, cfgPath, base+"mqtt: {listen: \"127.0.0.1:0\", allow_anonymous: true}\n")
	sock, dgrams := notifySocket(t)
	p := startAgent(t, []string{bin, "serve", "--config", cfgPath},
		"NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=600000") // 0.6s: pings every 0.2s, status every 0.6s

	// READY=1 first, with a status line; then pings and status refreshes.
	if m := nextDatagram(t, dgrams, "any", func(string) bool { return true }); !strings.HasPrefix(m, "READY=1\nSTATUS=started: ") {
		t.Fatalf("first datagram %q; want READY=1 with a status", m)
	}
	nextDatagram(t, dgrams, "WATCHDOG=1", func(m string) bool { return m == "WATCHDOG=1" })
	if err := mosquittoPub(t, p.mqtt, "sensors/boiler/temperature", `{"value": 61.5}`); err != nil {
		t.Fatal(err)
	}
	st := nextDatagram(t, dgrams, "STATUS with the new sensor", func(m string) bool {
		return strings.HasPrefix(m, "STATUS=") && strings.Contains(m, "1 sensors")
	})
	for _, part := range []string{"readings/s", "clients", "queue 0", "uplink off"} {
		if !strings.Contains(st, part) {
			t.Errorf("status %q lacks %q", st, part)
		}
	}

	// Good reload: log level and broker accounts change live.
	hash, err := broker.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	users := fmt.Sprintf("mqtt:\n  listen: \"127.0.0.1:0\"\n  allow_anonymous: false\n  users: [{username: sensor, password_hash: %q, publish: [\"sensors/#\"]}]\n", hash)
	writeConfig(t, cfgPath, base+"log: {level: debug}\n"+users)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, `msg="config reloaded"`, "applied=log.level,mqtt.allow_anonymous,mqtt.users")
	nextDatagram(t, dgrams, "RELOADING=1", func(m string) bool { return m == "RELOADING=1" })
	nextDatagram(t, dgrams, "READY=1 after the reload", func(m string) bool { return m == "READY=1" })
	if err := mosquittoPub(t, p.mqtt, "sensors/boiler/temperature", "62"); err == nil {
		t.Error("anonymous publish accepted after the reload turned allow_anonymous off")
	}
	if err := mosquittoPub(t, p.mqtt, "sensors/boiler/temperature", "62", "-u", "sensor", "-P", "s3cret"); err != nil {
		t.Errorf("the reloaded user cannot publish: %v", err)
	}

	// Bad reload: rejected with the reason; the running config stays.
	writeConfig(t, cfgPath, base+"log: {level: loud}\n"+users)
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, `msg="config reload rejected; the running config stays"`, `log.level: \"loud\" is not one of`)
	if err := mosquittoPub(t, p.mqtt, "sensors/boiler/temperature", "63", "-u", "sensor", "-P", "s3cret"); err != nil {
		t.Errorf("publish after a rejected reload: %v", err)
	}
	var out bytes.Buffer
	health := exec.Command(bin, "health", "--url", "http://"+p.http)
	health.Stdout = &out
	if err := health.Run(); err != nil || !strings.Contains(out.String(), "✓ pipeline") || !strings.Contains(out.String(), "✓ storage") {
		t.Errorf("edgeagent health after a rejected reload: %v\n%s", err, out.String())
	}

	// A listener change is reported as needing a restart, not applied.
	writeConfig(t, cfgPath, base+"log: {level: debug}\n"+strings.Replace(users, "127.0.0.1:0", "127.0.0.1:1", 1))
	p.signal(t, syscall.SIGHUP)
	p.waitLog(t, "config changes need a restart", "restart_needed=mqtt.listen")

	// SIGTERM: STOPPING=1 and a clean exit.
	p.signal(t, syscall.SIGTERM)
	nextDatagram(t, dgrams, "STOPPING=1", func(m string) bool { return m == "STOPPING=1" })
	if err := p.wait(t); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestServe_cpus: the agent runs its Go code on cpus CPUs (GOMAXPROCS),
// one by default, and the GOMAXPROCS environment variable overrides it.
func TestServe_cpus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildAgent(t, "amd64", "")
	for _, tt := range []struct {
		name, config, env, want string
	}{
		{"default", "", "GOMAXPROCS=", "cpus=1"},
		{"configured", "cpus: 2\n", "GOMAXPROCS=", "cpus=2"},
		{"environment wins", "cpus: 1\n", "GOMAXPROCS=2", "cpus=2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "edgeagent.yaml")
			writeConfig(t, cfgPath, fmt.Sprintf("gateway_id: cpus-gw\ndata_dir: %s\nhttp: {listen: \"127.0.0.1:0\"}\n"+
				"mqtt: {listen: \"127.0.0.1:0\"}\n%s", filepath.Join(dir, "data"), tt.config))
			p := startAgent(t, []string{bin, "serve", "--config", cfgPath}, tt.env)
			if line := p.waitLog(t, "edgeagent started"); !strings.Contains(line, " "+tt.want+" ") && !strings.HasSuffix(line, " "+tt.want) {
				t.Errorf("started line %q; want %s", line, tt.want)
			}
			if tt.env == "GOMAXPROCS=2" {
				p.waitLog(t, "GOMAXPROCS from the environment overrides cpus", "GOMAXPROCS=2", "cpus=1")
			}
			p.signal(t, syscall.SIGTERM)
			if err := p.wait(t); err != nil {
				t.Fatalf("exit: %v", err)
			}
		})
	}
}
