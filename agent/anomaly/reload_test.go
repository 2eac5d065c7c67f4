package anomaly

import (
	"strings"
	"testing"
	"time"
)

func TestEngine_SetRules(t *testing.T) {
	hot := Rule{Name: "hot", Sensor: "boiler-*", Detectors: []DetectorSpec{{Type: TypeThreshold, Max: f64(90), ClearMax: f64(85)}}}
	e := mustEngine(t, Options{Rules: []Rule{hot}})
	f := &feed{t: t, e: e}
	f.at("boiler-1", t0, 95)
	f.at("boiler-2", t0, 95)
	if !eq(f.states("threshold"), "firing", "firing") {
		t.Fatalf("before reload: %v", f.states(""))
	}
	firingID := f.alerts[0].ID

	// boiler-1 is now matched by a rule with another glob and boiler-2 by a
	// stricter one: both are different rules, so both start fresh.
	same := hot
	stricter := Rule{Name: "hot", Sensor: "boiler-*", Detectors: []DetectorSpec{{Type: TypeThreshold, Max: f64(99), ClearMax: f64(95)}}}
	same.Sensor = "boiler-1"
	var err error
	f.alerts, err = e.SetRules([]Rule{same, stricter}, t0.Add(time.Second), f.alerts[:0])
	if err != nil {
		t.Fatal(err)
	}
	if len(f.alerts) != 2 || f.alerts[0].State != "resolved" || !strings.Contains(f.alerts[0].Reason, "rule changed") {
		t.Fatalf("SetRules alerts = %+v; want the two open incidents resolved", f.alerts)
	}
	if id := f.alerts[0].ID + f.alerts[1].ID; !strings.Contains(id, firingID) {
		t.Errorf("resolved ids %q do not close incident %s", id, firingID)
	}
	// boiler-2 runs the stricter rule now: 95 is fine.
	f.alerts = f.alerts[:0]
	f.at("boiler-2", t0.Add(2*time.Second), 95)
	if len(f.alerts) != 0 {
		t.Errorf("boiler-2 at 95 under max 99 alerted: %+v", f.alerts)
	}
	if st, ok := e.Inspect("boiler-2"); !ok || st.Rule != "hot" {
		t.Errorf("Inspect(boiler-2) = %+v, %v", st, ok)
	}
}

func TestEngine_SetRules_unchangedKeepsState(t *testing.T) {
	hot := Rule{Name: "hot", Sensor: "boiler-*", Detectors: []DetectorSpec{{Type: TypeThreshold, Max: f64(90), ClearMax: f64(85)}}}
	e := mustEngine(t, Options{Rules: []Rule{hot}})
	f := &feed{t: t, e: e}
	f.at("boiler-1", t0, 95)
	alerts, err := e.SetRules([]Rule{hot}, t0.Add(time.Second), nil)
	if err != nil || len(alerts) != 0 {
		t.Fatalf("SetRules(same rules) = %v, %v; want no alerts", alerts, err)
	}
	f.alerts = f.alerts[:0]
	f.at("boiler-1", t0.Add(2*time.Second), 80) // below clear: resolves the open incident
	if !eq(f.states("threshold"), "resolved") {
		t.Errorf("after an unchanged reload the incident did not carry on: %v", f.states(""))
	}
	if _, err := e.SetRules([]Rule{{Name: "bad", Detectors: []DetectorSpec{{Type: "nope"}}}}, t0, nil); err == nil {
		t.Error("SetRules accepted a bad rule")
	}
}
