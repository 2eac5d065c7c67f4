package main

import (
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent/api"
)

// TestApp_discovery: Home Assistant discovery over real MQTT creates the
// sensor it can map, and lists the template it cannot in /api/v1/status and
// /metrics instead of guessing.
func TestApp_discovery(t *testing.T) {
	app := startApp(t, "ingest: {homeassistant_discovery: {enabled: true}}\n")
	c := connect(t, app.MQTTAddr(), "ha-device")
	pub := func(topic, payload string) {
		t.Helper()
		if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	pub("homeassistant/sensor/bedroomT/config",
		`{"device_class":"temperature","state_topic":"home/bedroom/state","unit_of_measurement":"°C","value_template":"{{ value_json.temperature }}","unique_id":"bedroom_t"}`)
	pub("homeassistant/sensor/bedroomX/config",
		`{"state_topic":"home/bedroom/state","value_template":"{{ value_json.a + value_json.b }}","unique_id":"bedroom_x"}`)
	pub("home/bedroom/state", `{"temperature": 23.2, "a": 1, "b": 2}`)

	eventually(t, "the discovered sensor", func() bool { return metric(t, app, "edgeagent_readings_processed_total") >= 1 })
	var st api.Status
	if code := call(t, app, "GET", "/api/v1/status", "", "", &st); code != 200 {
		t.Fatalf("status = %d", code)
	}
	if st.Ingest.DiscoveredSensors != 1 || len(st.Ingest.UnsupportedTemplates) != 1 {
		t.Fatalf("ingest status = %+v; want one discovered sensor and one unsupported template", st.Ingest)
	}
	if u := st.Ingest.UnsupportedTemplates[0]; u.Template != "{{ value_json.a + value_json.b }}" || u.Why == "" {
		t.Errorf("unsupported template = %+v", u)
	}
	if got := metric(t, app, "edgeagent_ha_unsupported_templates"); got != 1 {
		t.Errorf("edgeagent_ha_unsupported_templates = %v; want 1", got)
	}
	var sensors api.SensorList
	call(t, app, "GET", "/api/v1/sensors", "", "", &sensors)
	if len(sensors.Sensors) != 1 || sensors.Sensors[0].Unit != "°C" || sensors.Sensors[0].Value != 23.2 {
		t.Errorf("sensors = %+v; want bedroom_t at 23.2 °C", sensors.Sensors)
	}
}
