package anomaly

import (
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// TestEngine_deviceOffline runs a device's sensors on one engine and its
// liveness on another (two shards sharing Devices): going offline is one
// device_offline incident and holds the sensors' silence; coming back
// resolves it, and silence counts from the return.
func TestEngine_deviceOffline(t *testing.T) {
	devs := NewDevices()
	rules := []Rule{{Name: "dead", Detectors: []DetectorSpec{{Type: TypeSilence, After: time.Minute}}}}
	sensors := &feed{t: t, e: mustEngine(t, Options{Rules: rules, Devices: devs})}
	other := &feed{t: t, e: mustEngine(t, Options{Rules: rules, Devices: devs})}
	live := func(at time.Time, online bool, flags agent.Flags) {
		r := agent.Reading{Sensor: "tasmota-1", Kind: KindLiveness, Value: 1, Time: at, Arrived: at, Flags: flags}
		if !online {
			r.Value, r.Flags = 0, r.Flags|agent.FlagDeviceOffline
		}
		other.alerts = other.e.Process(r, &other.res, other.alerts)
	}
	ids := []string{"tasmota-1/DS18B20/Temperature", "tasmota-1/SI7021/Humidity", "tasmota-1/ENERGY/Power"}
	for s := 0; s < 30; s += 10 {
		for _, id := range append(ids, "other-device/x") {
			sensors.at(id, t0.Add(time.Duration(s)*time.Second), 20)
		}
	}
	live(t0.Add(30*time.Second), false, 0)
	live(t0.Add(31*time.Second), false, 0) // a repeated will: still one incident
	if !eq(other.states(DetectorDeviceOffline), "firing") || other.alerts[0].Sensor != "tasmota-1" {
		t.Fatalf("offline: %+v", other.alerts)
	}
	if other.e.Sensors() != 0 {
		t.Errorf("the liveness reading created %d detector sensors", other.e.Sensors())
	}
	for s := 30; s <= 600; s++ {
		sensors.tick(t0.Add(time.Duration(s) * time.Second))
	}
	// Only the sensor of another device falls silent.
	if !eq(sensors.states(""), "firing") || sensors.alerts[0].Sensor != "other-device/x" {
		t.Fatalf("while offline: %+v", sensors.alerts)
	}
	live(t0.Add(600*time.Second), true, 0)
	if !eq(other.states(""), "firing", "resolved") || other.alerts[1].ID != other.alerts[0].ID ||
		!other.alerts[1].StartedAt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("online: %+v", other.alerts)
	}
	// Back online: the sensors get their silence limit from the return.
	sensors.at(ids[0], t0.Add(620*time.Second), 21)
	for s := 601; s < 660; s++ {
		sensors.tick(t0.Add(time.Duration(s) * time.Second))
	}
	if len(sensors.alerts) != 1 {
		t.Fatalf("silence before the limit after return: %+v", sensors.alerts[1:])
	}
	for s := 660; s <= 670; s++ {
		sensors.tick(t0.Add(time.Duration(s) * time.Second))
	}
	if !eq(sensors.states(""), "firing", "firing", "firing") {
		t.Fatalf("silence after return: %+v", sensors.alerts)
	}
	for _, a := range sensors.alerts[1:] {
		if a.Sensor == ids[0] {
			t.Errorf("%s reported after the return but fell silent", a.Sensor)
		}
	}
	// A retained offline (last known) opens an incident that says so.
	live(t0.Add(800*time.Second), false, agent.FlagRetained)
	if a := other.alerts[len(other.alerts)-1]; a.State != agent.AlertFiring || a.ID == other.alerts[0].ID ||
		a.Reason != "device offline: its liveness topic says so (last known state, replayed by the broker)" {
		t.Errorf("retained offline: %+v", a)
	}
}

func TestDevices_state(t *testing.T) {
	d := NewDevices()
	if d.Offline("a/b") {
		t.Error("empty table: offline")
	}
	d.set("a", false, 1)
	d.set("a/b", true, 2)
	for _, tt := range []struct {
		sensor string
		want   bool
	}{{"a/b/c", true}, {"a/c", false}, {"a/b", false}, {"ab/c", false}, {"a", false}, {"x/a/b/c", false}} {
		if got := d.Offline(tt.sensor); got != tt.want {
			t.Errorf("Offline(%q) = %v; want %v", tt.sensor, got, tt.want)
		}
	}
}
