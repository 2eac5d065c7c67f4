package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeagent/edgeagent/agent/api"
	"github.com/edgeagent/edgeagent/agent/config"
)

func TestHealth_readyAgent(t *testing.T) {
	app := startApp(t, "")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"health", "--url", "http://" + app.HTTPAddr()}, &out, &errOut); err != nil {
		t.Fatalf("health: %v\n%s", err, out.String())
	}
	for _, want := range []string{"✓ broker\n", "✓ pipeline\n", "✓ storage\n", "ready\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// The URL comes from the config's http.listen when --url is absent.
	cfg := filepath.Join(t.TempDir(), "edgeagent.yaml")
	writeConfig(t, cfg, fmt.Sprintf("http: {listen: %q}\n", app.HTTPAddr()))
	out.Reset()
	if err := run(context.Background(), []string{"health", "--config", cfg}, &out, &errOut); err != nil || !strings.Contains(out.String(), "✓ storage") {
		t.Errorf("health --config: %v\n%s", err, out.String())
	}
}

func TestHealth_failedCheckExitsOne(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Options{Checks: map[string]api.Check{
		"storage":  func() error { return errors.New("storage: database reached maximum size") },
		"pipeline": func() error { return nil },
	}}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"health", "--url", srv.URL}, &out, &out)
	if exitCode(err) != 1 {
		t.Errorf("exit code %d (%v); want 1", exitCode(err), err)
	}
	want := "✓ pipeline\n✗ storage: storage: database reached maximum size\nnot ready: 1 of 2 checks failed\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}

func TestHealth_unreachableExitsOne(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close() // nothing listens there now
	var out bytes.Buffer
	err := run(context.Background(), []string{"health", "--url", url}, &out, &out)
	if exitCode(err) != 1 || !strings.HasPrefix(out.String(), "✗ agent: ") {
		t.Errorf("exit %d, output %q", exitCode(err), out.String())
	}
	err = run(context.Background(), []string{"health", "--config", filepath.Join(t.TempDir(), "none.yaml")}, &out, &out)
	if exitCode(err) != 1 || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080": "http://127.0.0.1:8080", ":8080": "http://127.0.0.1:8080",
		"[::]:8080": "http://[::1]:8080", "192.168.1.5:80": "http://192.168.1.5:80",
	} {
		if got, err := baseURL(in); got != want || err != nil {
			t.Errorf("baseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := baseURL(""); err == nil {
		t.Error("empty listen accepted")
	}
}

func TestDiffKeys(t *testing.T) {
	a := config.Default()
	b := config.Default()
	b.Log.Level = "debug"
	b.MQTT.Listen = "0.0.0.0:1883"
	b.MQTT.Users = []config.MQTTUser{{Username: "u"}}
	b.Rules = []config.Rule{{Name: "r"}}
	got := strings.Join(diffKeys(a, b), " ")
	if want := "log.level mqtt.listen mqtt.users rules"; got != want {
		t.Errorf("diffKeys = %q; want %q", got, want)
	}
	if d := diffKeys(a, a); len(d) != 0 {
		t.Errorf("no change: %v", d)
	}
	if !isLive("mqtt.users", true) || isLive("mqtt.users", false) || isLive("mqtt.listen", true) || !isLive("log.level", false) {
		t.Error("isLive")
	}
}
