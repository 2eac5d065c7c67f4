package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/broker/mosquittotest"
)

// TestApp_alertsReachTheUpstreamBroker: a threshold breach published to the
// embedded broker comes out on a real Mosquitto as a firing and then a
// resolved alert with one id, and the gateway's status is retained online.
func TestApp_alertsReachTheUpstreamBroker(t *testing.T) {
	up := mosquittotest.Start(t, mosquittotest.Options{})
	got := make(chan paho.Message, 16)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(up.URL()).SetClientID("upstream-consumer"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(50)
	if tok := sub.Subscribe("edgeagent/test-gw/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	app := startApp(t, fmt.Sprintf(`
upstream: {url: %q}
rules:
  - name: boiler
    match: {sensor: "boiler-*"}
    detectors: [{type: threshold, max: 90, clear_max: 85}]
    alert: {resolve_after: 0s}
`, up.URL()))
	c := connect(t, app.MQTTAddr(), "boiler")
	now := time.Now()
	for i, v := range []float64{70, 95, 96, 80} {
		payload := fmt.Sprintf(`{"value": %v, "ts": %d}`, v, now.Add(time.Duration(i)*time.Second).UnixMilli())
		if tok := c.Publish("sensors/boiler-1/temperature", 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}

	var alerts []agent.Alert
	online := false
	deadline := time.After(15 * time.Second)
	for len(alerts) < 2 || !online {
		select {
		case m := <-got:
			switch m.Topic() {
			case "edgeagent/test-gw/status":
				online = string(m.Payload()) == "online"
			case "edgeagent/test-gw/alerts/boiler-1":
				var a agent.Alert
				if err := json.Unmarshal(m.Payload(), &a); err != nil {
					t.Fatalf("alert payload %s: %v", m.Payload(), err)
				}
				alerts = append(alerts, a)
			default:
				t.Errorf("unexpected topic %s", m.Topic())
			}
		case <-deadline:
			t.Fatalf("got %d alerts, online=%v; want firing and resolved and online", len(alerts), online)
		}
	}
	if alerts[0].State != agent.AlertFiring || alerts[1].State != agent.AlertResolved {
		t.Errorf("states = %s, %s; want firing, resolved", alerts[0].State, alerts[1].State)
	}
	if alerts[0].ID == "" || alerts[0].ID != alerts[1].ID {
		t.Errorf("ids %q and %q; want one incident id", alerts[0].ID, alerts[1].ID)
	}
	if a := alerts[0]; a.Gateway != "test-gw" || a.Detector != "threshold" || a.Value != 95 || a.Reason == "" {
		t.Errorf("firing alert = %+v", a)
	}
	eventually(t, "an empty outbox", func() bool { d, _, _ := app.store.OutboxStats(); return d == 0 })
}
