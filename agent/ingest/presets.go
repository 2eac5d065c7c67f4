package ingest

import (
	"fmt"
	"strings"
)

// presets.go: named mappings for the device ecosystems of DEVICES.md. A
// preset is only a list of Topics built from the generic mechanism (topic
// captures, Flatten, Values, FormatLiveness); PresetTopics shows it, and
// docs/devices.md documents each with its real payloads.

// The presets a Topic may name.
const (
	PresetTasmota     = "tasmota"
	PresetZigbee2MQTT = "zigbee2mqtt"
	PresetShellyGen2  = "shelly-gen2"
	PresetShellyGen1  = "shelly-gen1"
	PresetESPHome     = "esphome"
	PresetThinEdge    = "thin-edge"
)

// Presets lists every preset name.
func Presets() []string {
	return []string{PresetTasmota, PresetZigbee2MQTT, PresetShellyGen2, PresetShellyGen1, PresetESPHome, PresetThinEdge}
}

// PresetPrefix returns a preset's default topic prefix ("" when the device id
// is the first level, as for ESPHome and Shelly Gen2).
func PresetPrefix(name string) string {
	switch name {
	case PresetTasmota:
		return "tele"
	case PresetZigbee2MQTT:
		return "zigbee2mqtt"
	case PresetShellyGen1:
		return "shellies"
	case PresetThinEdge:
		return "te"
	}
	return ""
}

// PresetTopics returns the topics preset name stands for, with prefix
// replacing its default topic prefix when not "". Liveness topics come first.
func PresetTopics(name, prefix string) ([]Topic, error) {
	if prefix == "" {
		prefix = PresetPrefix(name)
	}
	prefix = strings.Trim(prefix, "/")
	p := func(rest string) string {
		if prefix == "" {
			return rest
		}
		return prefix + "/" + rest
	}
	switch name {
	case PresetTasmota:
		// tele/<topic>/SENSOR = {"Time":"2021-01-13T23:58:41","DS18B20":{"Id":"030597946B04","Temperature":20.9},"TempUnit":"C"}
		return []Topic{
			{Pattern: p("{device}/LWT"), Format: FormatLiveness},
			{Pattern: p("{device}/SENSOR"), Format: FormatJSON, Time: "Time", TimeFormat: TimeLocal,
				Flatten: &Flatten{Depth: 2}, LowerKind: true, UnitFields: []string{"TempUnit", "PressureUnit"},
				Units: tasmotaUnits(), Kinds: map[string]string{"DewPoint": "dew_point", "ApparentPower": "apparent_power",
					"ReactivePower": "reactive_power", "Total": "energy", "Today": "energy_today", "Yesterday": "energy_yesterday"}},
		}, nil
	case PresetZigbee2MQTT:
		// zigbee2mqtt/<friendly name> = {"temperature":27.34,"humidity":44.72,"battery":100,"linkquality":120}
		return []Topic{
			{Pattern: p("bridge/#"), Format: FormatIgnore},
			{Pattern: p("{device+}/availability"), Format: FormatLiveness, Value: "state"},
			{Pattern: p("{device+}/set"), Format: FormatIgnore},
			{Pattern: p("{device+}/get"), Format: FormatIgnore},
			{Pattern: p("{device+}"), Format: FormatJSON, Time: "last_seen",
				Flatten: &Flatten{Depth: 1, Exclude: []string{"linkquality"}}, Units: z2mUnits()},
		}, nil
	case PresetShellyGen2:
		// <device>/status/temperature:0 = {"id":0,"tC":19.8,"tF":67.6}
		// <device>/events/rpc = {"method":"NotifyStatus","params":{"ts":1700000000.5,"temperature:0":{"id":0,"tC":19.8}}}
		include := []string{"tC", "rh", "apower", "voltage", "current", "aenergy.total", "freq", "pf", "percent", "lux",
			"act_power", "aprt_power", "total_act_energy"}
		units, kinds := shellyGen2Tables()
		return []Topic{
			{Pattern: p("{device}/online"), Format: FormatLiveness},
			{Pattern: p("{device}/status/{component}"), ID: "{device}/{component}", Format: FormatJSON,
				Flatten: &Flatten{Depth: 2, Include: include}, Units: units, Kinds: kinds},
			{Pattern: p("{device}/events/rpc"), Format: FormatJSON, Time: "params.ts", TimeFormat: TimeUnixS,
				Flatten: &Flatten{Depth: 3, Root: "params", Include: include}, Units: units, Kinds: kinds},
		}, nil
	case PresetShellyGen1:
		// shellies/shelly1-XXXXXX/ext_temperature/0 = 47.69
		n := func(pattern, id, kind, unit string) Topic {
			return Topic{Pattern: p(pattern), ID: id, Format: FormatNumber, Kind: kind, Unit: unit}
		}
		return []Topic{
			{Pattern: p("{device}/online"), Format: FormatLiveness},
			n("{device}/sensor/temperature", "{device}/temperature", "temperature", "°C"),
			n("{device}/sensor/humidity", "{device}/humidity", "humidity", "%"),
			n("{device}/sensor/battery", "{device}/battery", "battery", "%"),
			n("{device}/sensor/lux", "{device}/lux", "illuminance", "lx"),
			n("{device}/ext_temperature/{n}", "{device}/ext_temperature/{n}", "temperature", "°C"),
			n("{device}/ext_humidity/{n}", "{device}/ext_humidity/{n}", "humidity", "%"),
			n("{device}/relay/{n}/power", "{device}/relay/{n}/power", "power", "W"),
			n("{device}/relay/{n}/energy", "{device}/relay/{n}/energy", "energy", "Wmin"),
			n("{device}/emeter/{n}/power", "{device}/emeter/{n}/power", "power", "W"),
			n("{device}/emeter/{n}/voltage", "{device}/emeter/{n}/voltage", "voltage", "V"),
			n("{device}/emeter/{n}/total", "{device}/emeter/{n}/total", "energy", "Wh"),
			n("{device}/temperature", "{device}/temperature", "temperature", "°C"),
		}, nil
	case PresetESPHome:
		// <node>/sensor/temperature/state = 21.4; <node>/status = online|offline
		return []Topic{
			// Home Assistant's own birth/will has the same shape as a node's status.
			{Pattern: "homeassistant/status", Format: FormatIgnore},
			{Pattern: p("{device}/status"), Format: FormatLiveness},
			{Pattern: p("{device}/sensor/{kind}/state"), ID: "{device}/{kind}", Format: FormatNumber},
		}, nil
	case PresetThinEdge:
		// te/device/main///m/environment = {"temperature":23.4,"time":"2020-10-15T05:30:47+00:00"}
		return []Topic{
			{Pattern: p("{root}/{device}/service/tedge-agent/status/health"), ID: "{root}/{device}",
				Format: FormatLiveness, Value: "status"},
			{Pattern: p("{root}/{device}/{stype}/{service}/m/{mtype}"), ID: "{root}/{device}/{stype}/{service}/{mtype}",
				Format: FormatJSON, Time: "time", Flatten: &Flatten{Depth: 2}},
		}, nil
	}
	return nil, fmt.Errorf("%q is not one of %s", name, strings.Join(Presets(), ", "))
}

// presetTopics expands the preset of config topic i.
func presetTopics(i int, tc Topic) ([]Topic, error) {
	key := fmt.Sprintf("ingest.topics[%d]", i)
	other := tc
	other.Preset, other.Prefix = "", ""
	if other.Pattern != "" || other.Format != "" || other.ID != "" || other.Value != "" || other.Time != "" ||
		other.Values != nil || other.Flatten != nil || other.Kind != "" || other.Unit != "" || other.Sensor != "" {
		return nil, fmt.Errorf("%s: a preset takes only prefix", key)
	}
	if strings.ContainsAny(tc.Prefix, "+#{}") {
		return nil, fmt.Errorf("%s.prefix: %q must be literal topic levels", key, tc.Prefix)
	}
	ts, err := PresetTopics(tc.Preset, tc.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%s.preset: %w", key, err)
	}
	return ts, nil
}

func tasmotaUnits() map[string]string {
	return map[string]string{
		"Temperature": "@1", "DewPoint": "@1", "Humidity": "%", "Pressure": "@2", "SeaPressure": "@2",
		"Illuminance": "lx", "CO2": "ppm", "eCO2": "ppm", "TVOC": "ppb", "Battery": "%", "Distance": "cm",
		"Power": "W", "ApparentPower": "VA", "ReactivePower": "var", "Voltage": "V", "Current": "A",
		"Total": "kWh", "Today": "kWh", "Yesterday": "kWh", "Frequency": "Hz", "PM2.5": "µg/m³", "PM10": "µg/m³",
	}
}

func z2mUnits() map[string]string {
	return map[string]string{
		"temperature": "°C", "local_temperature": "°C", "humidity": "%", "pressure": "hPa", "battery": "%",
		"voltage": "mV", "illuminance": "lx", "illuminance_lux": "lx", "power": "W", "energy": "kWh",
		"current": "A", "co2": "ppm", "voc": "ppb", "pm25": "µg/m³", "soil_moisture": "%", "formaldehyd": "mg/m³",
	}
}

func shellyGen2Tables() (units, kinds map[string]string) {
	units = map[string]string{"tC": "°C", "rh": "%", "apower": "W", "voltage": "V", "current": "A", "total": "Wh",
		"freq": "Hz", "percent": "%", "lux": "lx", "act_power": "W", "aprt_power": "VA", "total_act_energy": "Wh"}
	kinds = map[string]string{"tC": "temperature", "rh": "humidity", "apower": "power", "total": "energy",
		"freq": "frequency", "pf": "power_factor", "percent": "battery", "lux": "illuminance",
		"act_power": "power", "aprt_power": "apparent_power", "total_act_energy": "energy"}
	return units, kinds
}
