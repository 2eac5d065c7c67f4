package main

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/sim"
	"github.com/edgeagent/edgeagent/storage"
)

// The rules of the incident test: the default detectors, with the silence
// limit and flatline duration shortened so the test runs in seconds.
const incidentRules = `
rules:
  - name: silent
    match: {sensor: "e2e-silent"}
    detectors: [{type: auto}, {type: silence, after: 2s}]
  - name: others
    match: {sensor: "e2e-*"}
    detectors: [{type: auto}, {type: flatline, duration: 60s, min_readings: 10}]
    alert: {resolve_after: 1m}
`

// publishSeries publishes n readings of s over MQTT at QoS 1, reading time
// advancing 10 s per reading from *t.
func publishSeries(t *testing.T, c paho.Client, s *sim.Sensor, topicID string, from *time.Time, n int) {
	t.Helper()
	for range n {
		v, ok := s.Next(*from)
		if ok {
			tok := c.Publish("sensors/"+topicID+"/"+s.Kind, 1, false, sim.Payload(nil, v, *from))
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish %s: %v", topicID, tok.Error())
			}
		}
		*from = from.Add(10 * time.Second)
	}
}

// TestApp_incidents_oneFiringOneResolvedEach injects a spike, a stuck value
// and a silent sensor over real MQTT and expects exactly one firing and one
// resolved alert per incident, from the right detector, stored durably.
func TestApp_incidents_oneFiringOneResolvedEach(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: seconds of wall time for the silence detector")
	}
	app := startApp(t, incidentRules)
	c := connect(t, app.MQTTAddr(), "e2e-sensors")
	start := time.Now().Add(-3 * time.Hour)

	spike, stuck, silent := sim.NewSensor(0, 7), sim.NewSensor(5, 7), sim.NewSensor(10, 7)
	tSpike, tStuck, tSilent := start, start, start
	publishSeries(t, c, spike, "e2e-spike", &tSpike, 300)
	spike.Inject(sim.Spike, tSpike, time.Second)
	publishSeries(t, c, spike, "e2e-spike", &tSpike, 60)

	publishSeries(t, c, stuck, "e2e-stuck", &tStuck, 300)
	stuck.Inject(sim.Stuck, tStuck, 5*time.Minute) // 30 readings at one value
	publishSeries(t, c, stuck, "e2e-stuck", &tStuck, 60)

	// The silent sensor publishes in real time, stops for 4 s, then resumes.
	for range 30 {
		publishSeries(t, c, silent, "e2e-silent", &tSilent, 1)
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, "the silence alert", func() bool {
		return metric(t, app, `edgeagent_alerts_total{state="firing"}`) >= 3
	})
	publishSeries(t, c, silent, "e2e-silent", &tSilent, 1)
	eventually(t, "three resolved alerts", func() bool {
		return metric(t, app, `edgeagent_alerts_total{state="resolved"}`) >= 3
	})
	time.Sleep(1500 * time.Millisecond) // let any extra transition show itself

	if got := metric(t, app, `edgeagent_alerts_total{state="firing"}`); got != 3 {
		t.Errorf("firing alerts = %v; want 3 (one per incident)", got)
	}
	if got := metric(t, app, `edgeagent_alerts_total{state="resolved"}`); got != 3 {
		t.Errorf("resolved alerts = %v; want 3", got)
	}
	if got := metric(t, app, "edgeagent_alerts_open"); got != 0 {
		t.Errorf("open alerts = %v; want 0", got)
	}
	alerts, _, err := app.store.Alerts(storage.AlertQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"e2e-spike": "auto", "e2e-stuck": "flatline", "e2e-silent": "silence"}
	got := map[string]string{}
	for _, a := range alerts {
		if a.State != agent.AlertResolved {
			t.Errorf("stored alert %s on %s is %s; want resolved", a.ID, a.Sensor, a.State)
		}
		if a.Reason == "" || a.ID == "" || a.Gateway != "test-gw" {
			t.Errorf("alert lacks reason, id or gateway: %+v", a)
		}
		got[a.Sensor] = a.Detector
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alerts by sensor = %v; want %v", got, want)
	}
}
