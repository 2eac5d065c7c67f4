package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCross_runsUnderQemu builds the arm64 and armv7 binaries like `make
// cross` and runs each under qemu-user: `version`, then a short `serve` that
// takes a QoS 1 reading from mosquitto_pub and counts it in /metrics. A
// broken cross build (or a 32-bit alignment panic) fails here.
func TestCross_runsUnderQemu(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds and emulates")
	}
	for _, c := range []struct{ name, goarch, goarm, qemu string }{
		{"arm64", "arm64", "", "/usr/bin/qemu-aarch64-static"},
		{"armv7", "arm", "7", "/usr/bin/qemu-arm-static"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat(c.qemu); err != nil {
				t.Fatalf("%s missing: run `make deps` (Debian package qemu-user-static)", c.qemu)
			}
			bin := buildAgent(t, c.goarch, c.goarm)
			out, err := exec.Command(c.qemu, bin, "version").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "edgeagent test-"+c.goarch+c.goarm {
				t.Fatalf("version under qemu: %v: %q", err, out)
			}

			dir := t.TempDir()
			cfg := filepath.Join(dir, "edgeagent.yaml")
			writeConfig(t, cfg, fmt.Sprintf("gateway_id: qemu\ndata_dir: %s\nmqtt: {listen: \"127.0.0.1:0\"}\nhttp: {listen: \"127.0.0.1:0\"}\nstorage: {max_bytes: 16MB}\n",
				filepath.Join(dir, "data")))
			p := startAgent(t, []string{c.qemu, bin, "serve", "--config", cfg})
			if err := mosquittoPub(t, p.mqtt, "sensors/pi-1/temperature", `{"value": 21.5}`); err != nil {
				t.Fatal(err)
			}
			// The PUBACK came after the commit; the counter follows the commit.
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(get(t, "http://"+p.http+"/metrics"), "\nedgeagent_readings_processed_total 1\n") {
				if time.Now().After(deadline) {
					t.Fatalf("reading not counted under qemu:\n%s", get(t, "http://"+p.http+"/metrics"))
				}
				time.Sleep(50 * time.Millisecond)
			}
			p.signal(t, syscall.SIGTERM)
			if err := p.wait(t); err != nil {
				t.Errorf("exit under qemu: %v", err)
			}
		})
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
