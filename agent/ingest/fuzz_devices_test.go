package ingest

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzDevices fuzzes the payloads of the device tests whose topic starts
// with one of prefixes, seeded with their real payloads.
func fuzzDevices(f *testing.F, prefixes ...string) {
	var topics []string
	for _, tt := range deviceTests {
		for _, p := range prefixes {
			if strings.HasPrefix(tt.topic, p) && !tt.noMatch {
				f.Add(len(topics), tt.payload)
				topics = append(topics, tt.topic)
			}
		}
	}
	d := newDeviceDecoder(f)
	f.Fuzz(func(t *testing.T, i int, payload string) {
		if i < 0 {
			i = -i
		}
		topic := topics[i%len(topics)]
		out, err := checkDecode(t, d, topic, []byte(payload))
		for _, r := range out {
			if IsLiveness(&r) && r.Value != 0 && r.Value != 1 {
				t.Fatalf("Decode(%q, %q): liveness value %v", topic, payload, r.Value)
			}
		}
		_ = err
	})
}

func FuzzTasmota(f *testing.F)     { fuzzDevices(f, "tele/", "site2/") }
func FuzzZigbee2MQTT(f *testing.F) { fuzzDevices(f, "zigbee2mqtt/") }
func FuzzShelly(f *testing.F)      { fuzzDevices(f, "shelly") }
func FuzzESPHome(f *testing.F)     { fuzzDevices(f, "livingroom/") }
func FuzzThinEdge(f *testing.F)    { fuzzDevices(f, "te/") }
func FuzzValuesList(f *testing.F)  { fuzzDevices(f, "diy/") }

// FuzzLineProtocol also checks the item accounting: every reading or
// rejection comes from a non-empty, non-comment line.
func FuzzLineProtocol(f *testing.F) {
	fuzzDevices(f, "telegraf")
}

// FuzzSparkplug decodes arbitrary bytes as every Sparkplug message type, after
// a real NBIRTH, so aliases resolve.
func FuzzSparkplug(f *testing.F) {
	for _, tt := range deviceTests {
		if strings.HasPrefix(tt.topic, "spBv1.0/") {
			f.Add(0, []byte(tt.payload))
		}
	}
	f.Add(1, spMsg(1732795199000, 1, spM{alias: 1, value: float32(22)}, spM{alias: 2, value: int32(7)}))
	f.Add(2, spMsg(1732795199000, 2, spM{name: "Flow", alias: 10, dtype: spDouble, value: 3.25, unit: "m³/h"}))
	topics := []string{"spBv1.0/plant/NBIRTH/edge1", "spBv1.0/plant/NDATA/edge1", "spBv1.0/plant/DBIRTH/edge1/pump",
		"spBv1.0/plant/DDATA/edge1/pump", "spBv1.0/plant/DDEATH/edge1/pump", "spBv1.0/plant/NDEATH/edge1"}
	birth := spMsg(1732795199000, 0, spM{name: "Inputs/Temperature", alias: 1, dtype: spFloat, value: float32(21.5)},
		spM{name: "Inputs/Count", alias: 2, dtype: spInt16, value: int32(-3)})
	f.Fuzz(func(t *testing.T, i int, payload []byte) {
		if i < 0 {
			i = -i
		}
		d := newDeviceDecoder(t)
		if _, err := d.Decode(topics[0], birth, arrived, nil); err != nil {
			t.Fatal(err)
		}
		checkDecode(t, d, topics[i%len(topics)], payload)
	})
}

// FuzzDiscovery feeds a fuzzed discovery config, then the state and
// availability topics it names, and checks that unsupported templates are
// listed, never decoded.
func FuzzDiscovery(f *testing.F) {
	f.Add(`{"device_class":"temperature","name":"Temperature","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"°C","value_template":"{{ value_json.temperature}}"}`,
		`{ "temperature": 23.20, "humidity": 43.70 }`)
	f.Add(`{"dev_cla":"temperature","unit_of_meas":"°C","stat_t":"livingroom/sensor/temperature/state","avty_t":"livingroom/status","uniq_id":"ESPsensortemperature","dev":{"ids":"aabbccddeeff"}}`, `21.4`)
	f.Add(`{"~":"garden/soil","stat_t":"~/state","val_tpl":"{{ value_json['moisture'] | round(1) }}","avty":[{"t":"~/avail"}]}`, `{"moisture":41.26}`)
	f.Add(`{"stat_t":"x","val_tpl":"{{ value | multiply(2) }}"}`, `1`)
	f.Fuzz(func(t *testing.T, config, state string) {
		d := newDeviceDecoder(t)
		const cfg = "homeassistant/sensor/node/obj/config"
		_, err := d.Decode(cfg, []byte(config), arrived, nil)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Reason != ReasonBadDiscovery {
				t.Fatalf("config %q: %v; want nil or bad_discovery", config, err)
			}
			return
		}
		for _, u := range d.UnsupportedTemplates() {
			if u.Why == "" || !utf8.ValidString(u.Template) && u.Template == "" {
				t.Fatalf("unsupported %+v", u)
			}
			if out, err := d.Decode(u.StateTopic, []byte(state), arrived, nil); err == nil && len(out) > 0 && u.StateTopic != "" {
				for _, r := range out {
					if r.Sensor == u.Sensor {
						t.Fatalf("unsupported template %q decoded %+v", u.Template, r)
					}
				}
			}
		}
		d.ha.mu.RLock()
		var topics []string
		for _, e := range d.ha.entities {
			topics = append(topics, e.state, e.availTopic)
		}
		d.ha.mu.RUnlock()
		for _, tp := range topics {
			if tp != "" && !strings.HasPrefix(tp, "$") {
				if out, err := d.Decode(tp, []byte(state), arrived, nil); !errors.Is(err, ErrNoMatch) {
					checkResults(t, d, tp, []byte(state), out, err)
				}
			}
		}
	})
}
