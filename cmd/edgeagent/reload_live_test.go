package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/broker/mosquittotest"
)

// TestApp_reload_rulesAndUplinkLive: a reload swaps the detector rules and
// re-points the uplink at another broker without a restart; readings keep
// flowing and the next alert goes to the new broker under the new rule.
func TestApp_reload_rulesAndUplinkLive(t *testing.T) {
	oldUp := mosquittotest.Start(t, mosquittotest.Options{})
	newUp := mosquittotest.Start(t, mosquittotest.Options{})
	got := make(chan string, 16)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(newUp.URL()).SetClientID("new-upstream"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(50)
	sub.Subscribe("edgeagent/test-gw/alerts/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }).WaitTimeout(5 * time.Second)

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "edgeagent.yaml")
	write := func(upURL string, max int) {
		body := fmt.Sprintf(`gateway_id: test-gw
data_dir: %s
mqtt: {listen: "127.0.0.1:0"}
http: {listen: ""}
upstream: {url: %q}
rules:
  - name: boiler
    match: {sensor: "boiler-*"}
    detectors: [{type: threshold, max: %d}]
`, filepath.Join(dir, "data"), upURL, max)
		if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(oldUp.URL(), 90)
	cfg, err := loadConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp(cfg, AppOptions{})
	if err := app.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	c := connect(t, app.MQTTAddr(), "boiler")
	publish := func(v float64) {
		t.Helper()
		if tok := c.Publish("sensors/boiler-1/temperature", 1, false, fmt.Sprint(v)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	publish(80)

	write(newUp.URL(), 50)
	rep, err := app.reload(cfgFile, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Applied, "rules") || !slices.Contains(rep.Applied, "upstream.url") || len(rep.RestartNeeded) != 0 {
		t.Fatalf("reload report = %+v; want rules and upstream.url applied live", rep)
	}
	publish(60) // above the new max only
	select {
	case p := <-got:
		if !strings.Contains(p, `"state":"firing"`) || !strings.Contains(p, "above 50") {
			t.Errorf("alert on the new broker = %s", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no alert on the new upstream broker after the reload")
	}
	if st := app.pipeline.Stats(); st.Processed != 2 || st.Rejected != 0 {
		t.Errorf("pipeline stats = %+v; want both readings processed", st)
	}
}
