package ingest

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgeagent/edgeagent/agent"
)

// cet is the gateway's zone in these tests: Tasmota's Time is local.
var cet = time.FixedZone("CET", 3600)

// local formats arrived+d as Tasmota does: wall clock in cet, no offset.
func local(d time.Duration) string { return arrived.Add(d).In(cet).Format("2006-01-02T15:04:05") }

func unixS(d time.Duration) string { return itoa(arrived.Add(d).Unix()) }

// deviceTopics are the presets and codecs of the device ecosystems.
var deviceTopics = []Topic{
	{Preset: PresetTasmota},
	{Preset: PresetZigbee2MQTT},
	{Preset: PresetShellyGen1},
	{Preset: PresetShellyGen2},
	{Preset: PresetESPHome},
	{Preset: PresetThinEdge},
	{Preset: PresetTasmota, Prefix: "site2/tele"},
	{Pattern: "telegraf/{host}/#", ID: "{host}", Format: FormatLine, IDTags: []string{"source"}},
	{Pattern: "telegraf-ms/#", Format: FormatLine, TimeFormat: TimeUnixMs},
	{Pattern: "diy/{device}/state", Format: FormatJSON, Time: "ts", TimeFormat: TimeUnixMs, Values: []Value{
		{Path: "env.t", Kind: "temperature", Unit: "°C"}, {Path: "env.rh", Kind: "humidity", Unit: "%"}, {Path: "door"}}},
}

func newDeviceDecoder(t testing.TB) *Decoder {
	t.Helper()
	d, err := New(Options{Topics: deviceTopics, Location: cet, HomeAssistant: &HomeAssistant{}, Sparkplug: &Sparkplug{}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const offline = agent.FlagDeviceOffline

// spMsg encodes a Sparkplug B Payload: metrics are (name, alias, datatype,
// value) with value a float64, int64, bool or string.
type spM struct {
	name  string
	alias uint64
	dtype uint32
	value any
	hist  bool
	unit  string
	ts    uint64
}

func spMsg(ts uint64, seq int, metrics ...spM) []byte {
	var b []byte
	if ts != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, ts)
	}
	for _, m := range metrics {
		var mb []byte
		if m.name != "" {
			mb = protowire.AppendTag(mb, 1, protowire.BytesType)
			mb = protowire.AppendString(mb, m.name)
		}
		if m.alias != 0 {
			mb = protowire.AppendTag(mb, 2, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.alias)
		}
		if m.ts != 0 {
			mb = protowire.AppendTag(mb, 3, protowire.VarintType)
			mb = protowire.AppendVarint(mb, m.ts)
		}
		if m.dtype != 0 {
			mb = protowire.AppendTag(mb, 4, protowire.VarintType)
			mb = protowire.AppendVarint(mb, uint64(m.dtype))
		}
		if m.hist {
			mb = protowire.AppendTag(mb, 5, protowire.VarintType)
			mb = protowire.AppendVarint(mb, 1)
		}
		if m.unit != "" {
			var ps, pv []byte
			ps = protowire.AppendTag(ps, 1, protowire.BytesType)
			ps = protowire.AppendString(ps, "engUnit")
			pv = protowire.AppendTag(pv, 1, protowire.VarintType)
			pv = protowire.AppendVarint(pv, 12)
			pv = protowire.AppendTag(pv, 8, protowire.BytesType)
			pv = protowire.AppendString(pv, m.unit)
			ps = protowire.AppendTag(ps, 2, protowire.BytesType)
			ps = protowire.AppendBytes(ps, pv)
			mb = protowire.AppendTag(mb, 9, protowire.BytesType)
			mb = protowire.AppendBytes(mb, ps)
		}
		switch v := m.value.(type) {
		case float64:
			mb = protowire.AppendTag(mb, 13, protowire.Fixed64Type)
			mb = protowire.AppendFixed64(mb, math.Float64bits(v))
		case float32:
			mb = protowire.AppendTag(mb, 12, protowire.Fixed32Type)
			mb = protowire.AppendFixed32(mb, math.Float32bits(v))
		case int32:
			mb = protowire.AppendTag(mb, 10, protowire.VarintType)
			mb = protowire.AppendVarint(mb, uint64(uint32(v)))
		case int64:
			mb = protowire.AppendTag(mb, 11, protowire.VarintType)
			mb = protowire.AppendVarint(mb, uint64(v))
		case bool:
			mb = protowire.AppendTag(mb, 14, protowire.VarintType)
			mb = protowire.AppendVarint(mb, protowire.EncodeBool(v))
		case string:
			mb = protowire.AppendTag(mb, 15, protowire.BytesType)
			mb = protowire.AppendString(mb, v)
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
	}
	if seq >= 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(seq))
	}
	return b
}

// deviceTests use the real payload shapes of DEVICES.md, with times moved
// next to the test's arrival time.
var deviceTests = []decodeTest{
	// Tasmota: tele/<topic>/SENSOR, local Time, TempUnit.
	{name: "tasmota DS18B20", topic: "tele/ds1820/SENSOR",
		payload: `{"Time":"` + local(-19*time.Second) + `","DS18B20":{"Id":"030597946B04","Temperature":20.9},"TempUnit":"C"}`,
		want:    []want{{sensor: "ds1820/DS18B20/Temperature", kind: "temperature", unit: "°C", value: 20.9, time: arrived.Add(-19 * time.Second)}}},
	{name: "tasmota BLE Fahrenheit", topic: "tele/ble-gw/SENSOR",
		payload: `{"Time":"` + local(-time.Minute) + `","LYWSD03-52680f":{"Temperature":70.1,"Humidity":58.0,"DewPoint":54.5,"Battery":100},"TempUnit":"F"}`,
		want: []want{
			{sensor: "ble-gw/LYWSD03-52680f/Temperature", kind: "temperature", unit: "°F", value: 70.1, time: arrived.Add(-time.Minute)},
			{sensor: "ble-gw/LYWSD03-52680f/Humidity", kind: "humidity", unit: "%", value: 58, time: arrived.Add(-time.Minute)},
			{sensor: "ble-gw/LYWSD03-52680f/DewPoint", kind: "dew_point", unit: "°F", value: 54.5, time: arrived.Add(-time.Minute)},
			{sensor: "ble-gw/LYWSD03-52680f/Battery", kind: "battery", unit: "%", value: 100, time: arrived.Add(-time.Minute)},
		}},
	{name: "tasmota energy", topic: "tele/plug/SENSOR",
		payload: `{"Time":"` + local(0) + `","ENERGY":{"TotalStartTime":"2018-11-06T15:59:24","Total":9098.245,"Yesterday":2.1,"Today":0.5,"Power":170,"Current":1.000}}`,
		want: []want{
			{sensor: "plug/ENERGY/Total", kind: "energy", unit: "kWh", value: 9098.245},
			{sensor: "plug/ENERGY/Yesterday", kind: "energy_yesterday", unit: "kWh", value: 2.1},
			{sensor: "plug/ENERGY/Today", kind: "energy_today", unit: "kWh", value: 0.5},
			{sensor: "plug/ENERGY/Power", kind: "power", unit: "W", value: 170},
			{sensor: "plug/ENERGY/Current", kind: "current", unit: "A", value: 1},
		}},
	{name: "tasmota two-channel power array", topic: "tele/plug2/SENSOR",
		payload: `{"Time":"` + local(0) + `","ENERGY":{"Power":[12,0]}}`,
		want:    []want{{sensor: "plug2/ENERGY/Power/0", kind: "power", unit: "W", value: 12}, {sensor: "plug2/ENERGY/Power/1", kind: "power", unit: "W", value: 0}}},
	{name: "tasmota prefix override", topic: "site2/tele/ds1820/SENSOR",
		payload: `{"Time":"` + local(0) + `","DS18B20":{"Temperature":20.9},"TempUnit":"C"}`,
		want:    []want{{sensor: "ds1820/DS18B20/Temperature", kind: "temperature", unit: "°C", value: 20.9}}},
	{name: "tasmota LWT offline", topic: "tele/ds1820/LWT", payload: `Offline`,
		want: []want{{sensor: "ds1820", kind: KindLiveness, value: 0, flags: offline}}},
	{name: "tasmota LWT online", topic: "tele/ds1820/LWT", payload: `Online`,
		want: []want{{sensor: "ds1820", kind: KindLiveness, value: 1}}},
	{name: "tasmota LWT junk", topic: "tele/ds1820/LWT", payload: `Maybe`, reasons: []Reason{ReasonBadLiveness},
		errText: `"Maybe" is neither online`},
	{name: "tasmota nothing to map", topic: "tele/ds1820/SENSOR", payload: `{"Time":"` + local(0) + `","TempUnit":"C"}`,
		reasons: []Reason{ReasonNoValues}},
	{name: "tasmota bad time", topic: "tele/ds1820/SENSOR", payload: `{"Time":"yesterday","DS18B20":{"Temperature":1}}`,
		reasons: []Reason{ReasonBadTimestamp}, errText: `field "Time"`},
	{name: "tasmota truncated", topic: "tele/ds1820/SENSOR", payload: `{"Time":"` + local(0) + `","DS18B20":{"Temperature":20.9`,
		reasons: []Reason{ReasonBadJSON}},
	{name: "tasmota STATE is not mapped", topic: "tele/ds1820/STATE", payload: `{"Wifi":{"RSSI":60}}`, noMatch: true},

	// Zigbee2MQTT: zigbee2mqtt/<friendly name>, flat JSON, availability.
	{name: "z2m WSDCGQ01LM", topic: "zigbee2mqtt/kitchen/WSDCGQ01LM",
		payload: `{"temperature": 27.34, "humidity": 44.72, "battery": 100, "linkquality": 120, "voltage": 3005, "occupancy": true, "state": "ON"}`,
		want: []want{
			{sensor: "kitchen/WSDCGQ01LM/temperature", kind: "temperature", unit: "°C", value: 27.34},
			{sensor: "kitchen/WSDCGQ01LM/humidity", kind: "humidity", unit: "%", value: 44.72},
			{sensor: "kitchen/WSDCGQ01LM/battery", kind: "battery", unit: "%", value: 100},
			{sensor: "kitchen/WSDCGQ01LM/voltage", kind: "voltage", unit: "mV", value: 3005},
			{sensor: "kitchen/WSDCGQ01LM/occupancy", kind: "occupancy", value: 1},
		}},
	{name: "z2m last_seen", topic: "zigbee2mqtt/door", payload: `{"contact":false,"last_seen":"` + arrived.Add(-10*time.Second).In(cet).Format(time.RFC3339) + `"}`,
		want: []want{{sensor: "door/contact", kind: "contact", value: 0, time: arrived.Add(-10 * time.Second)}}},
	{name: "z2m last_seen epoch", topic: "zigbee2mqtt/door", payload: `{"contact":true,"last_seen":` + ms(-time.Second) + `}`,
		want: []want{{sensor: "door/contact", kind: "contact", value: 1, time: arrived.Add(-time.Second)}}},
	{name: "z2m availability", topic: "zigbee2mqtt/kitchen/WSDCGQ01LM/availability", payload: `{"state":"offline"}`,
		want: []want{{sensor: "kitchen/WSDCGQ01LM", kind: KindLiveness, value: 0, flags: offline}}},
	{name: "z2m legacy availability", topic: "zigbee2mqtt/door/availability", payload: `online`,
		want: []want{{sensor: "door", kind: KindLiveness, value: 1}}},
	{name: "z2m availability without state", topic: "zigbee2mqtt/door/availability", payload: `{"x":1}`,
		reasons: []Reason{ReasonMissingValue}},
	{name: "z2m bridge devices ignored", topic: "zigbee2mqtt/bridge/devices", payload: `[{"ieee_address":"0x1"}]`},
	{name: "z2m set ignored", topic: "zigbee2mqtt/lamp/set", payload: `{"state":"ON"}`},
	{name: "z2m switch state only", topic: "zigbee2mqtt/lamp", payload: `{"state":"ON","linkquality":80}`, reasons: []Reason{ReasonNoValues}},
	{name: "z2m array payload", topic: "zigbee2mqtt/lamp", payload: `[1]`, reasons: []Reason{ReasonNotNumeric}},

	// Shelly Gen2: <device>/status/<component:id> and events/rpc.
	{name: "shelly gen2 temperature", topic: "shellyplusht-08b61fcb7f3c/status/temperature:0", payload: `{"id":0,"tC":19.8,"tF":67.6}`,
		want: []want{{sensor: "shellyplusht-08b61fcb7f3c/temperature:0/tC", kind: "temperature", unit: "°C", value: 19.8}}},
	{name: "shelly gen2 humidity", topic: "shellyplusht-08b61fcb7f3c/status/humidity:0", payload: `{"id":0,"rh":42.2}`,
		want: []want{{sensor: "shellyplusht-08b61fcb7f3c/humidity:0/rh", kind: "humidity", unit: "%", value: 42.2}}},
	{name: "shelly gen2 switch", topic: "shellyplus1pm-a8032ab12345/status/switch:0",
		payload: `{"id":0,"source":"init","output":true,"apower":8.9,"voltage":230.6,"current":0.041,"aenergy":{"total":12.345,"by_minute":[0.0,0.0,0.0],"minute_ts":1732795200},"temperature":{"tC":41.2,"tF":106.2}}`,
		want: []want{
			{sensor: "shellyplus1pm-a8032ab12345/switch:0/apower", kind: "power", unit: "W", value: 8.9},
			{sensor: "shellyplus1pm-a8032ab12345/switch:0/voltage", kind: "voltage", unit: "V", value: 230.6},
			{sensor: "shellyplus1pm-a8032ab12345/switch:0/current", kind: "current", unit: "A", value: 0.041},
			{sensor: "shellyplus1pm-a8032ab12345/switch:0/aenergy/total", kind: "energy", unit: "Wh", value: 12.345},
			{sensor: "shellyplus1pm-a8032ab12345/switch:0/temperature/tC", kind: "temperature", unit: "°C", value: 41.2},
		}},
	{name: "shelly gen2 NotifyStatus", topic: "shellyplusht-08b61fcb7f3c/events/rpc",
		payload: `{"src":"shellyplusht-08b61fcb7f3c","dst":"shellyplusht-08b61fcb7f3c/events","method":"NotifyStatus","params":{"ts":` + unixS(-5*time.Second) + `.5,"temperature:0":{"id":0,"tC":19.9,"tF":67.8}}}`,
		want:    []want{{sensor: "shellyplusht-08b61fcb7f3c/temperature:0/tC", kind: "temperature", unit: "°C", value: 19.9, time: arrived.Add(-4500 * time.Millisecond)}}},
	{name: "shelly gen2 NotifyEvent has no values", topic: "shellyplusht-08b61fcb7f3c/events/rpc",
		payload: `{"method":"NotifyEvent","params":{"ts":` + unixS(0) + `,"events":[{"component":"input:0","event":"single_push"}]}}`,
		reasons: []Reason{ReasonNoValues}},
	{name: "shelly gen2 rpc without params", topic: "shellyplusht-08b61fcb7f3c/events/rpc", payload: `{"method":"x"}`,
		reasons: []Reason{ReasonNoValues}},
	{name: "shelly gen2 offline", topic: "shellyplusht-08b61fcb7f3c/online", payload: `false`,
		want: []want{{sensor: "shellyplusht-08b61fcb7f3c", kind: KindLiveness, value: 0, flags: offline}}},

	// Shelly Gen1: a plain value per topic.
	{name: "shelly gen1 ext temperature", topic: "shellies/shelly1-34945472A6F0/ext_temperature/0", payload: `47.69`,
		want: []want{{sensor: "shelly1-34945472A6F0/ext_temperature/0", kind: "temperature", unit: "°C", value: 47.69}}},
	{name: "shelly gen1 H&T humidity", topic: "shellies/shellyht-6FE1A5/sensor/humidity", payload: `51.5`,
		want: []want{{sensor: "shellyht-6FE1A5/humidity", kind: "humidity", unit: "%", value: 51.5}}},
	{name: "shelly gen1 relay power", topic: "shellies/shelly1pm-1/relay/0/power", payload: `8.91`,
		want: []want{{sensor: "shelly1pm-1/relay/0/power", kind: "power", unit: "W", value: 8.91}}},
	{name: "shelly gen1 online", topic: "shellies/shelly1-34945472A6F0/online", payload: `true`,
		want: []want{{sensor: "shelly1-34945472A6F0", kind: KindLiveness, value: 1}}},
	{name: "shelly gen1 relay state is not a reading", topic: "shellies/shelly1-34945472A6F0/relay/0", payload: `on`, noMatch: true},

	// ESPHome: bare numbers, status birth/will.
	{name: "esphome sensor", topic: "livingroom/sensor/temperature/state", payload: `21.4`,
		want: []want{{sensor: "livingroom/temperature", kind: "temperature", value: 21.4}}},
	{name: "esphome NaN is None", topic: "livingroom/sensor/temperature/state", payload: `None`, reasons: []Reason{ReasonMissingValue}},
	{name: "home assistant status is not a device", topic: "homeassistant/status", payload: `online`},
	{name: "esphome status offline", topic: "livingroom/status", payload: `offline`,
		want: []want{{sensor: "livingroom", kind: KindLiveness, value: 0, flags: offline}}},

	// thin-edge.io: te/<root>/<device>/<service type>/<service>/m/<type>.
	{name: "thin-edge measurement", topic: "te/device/main///m/environment",
		payload: `{"temperature":23.4,"time":"` + arrived.Add(-13*time.Second).Format(time.RFC3339) + `"}`,
		want:    []want{{sensor: "device/main/environment/temperature", kind: "temperature", value: 23.4, time: arrived.Add(-13 * time.Second)}}},
	{name: "thin-edge grouped, unix time", topic: "te/device/child1///m/",
		payload: `{"Climate":{"Temperature":23.4,"Humidity":50},"time":` + unixS(-3*time.Second) + `}`,
		want: []want{
			{sensor: "device/child1/Climate/Temperature", kind: "Temperature", value: 23.4, time: arrived.Add(-3 * time.Second)},
			{sensor: "device/child1/Climate/Humidity", kind: "Humidity", value: 50, time: arrived.Add(-3 * time.Second)},
		}},
	{name: "thin-edge agent down", topic: "te/device/main/service/tedge-agent/status/health",
		payload: `{"status":"down","pid":1234,"time":` + unixS(-5*time.Second) + `}`,
		want:    []want{{sensor: "device/main", kind: KindLiveness, value: 0, flags: offline}}},

	// Line protocol (Telegraf).
	{name: "line protocol", topic: "telegraf/host1/modbus",
		payload: `modbus,location=main\ building,source=device\ 1,status=ok,type=Machine\ A temperature=21.4,count=3i,supplied=true,label="x, y=z",big=5u ` +
			itoa(arrived.Add(-2*time.Second).UnixNano()),
		want: []want{
			{sensor: "host1/modbus/device 1/temperature", kind: "temperature", value: 21.4, time: arrived.Add(-2 * time.Second)},
			{sensor: "host1/modbus/device 1/count", kind: "count", value: 3, time: arrived.Add(-2 * time.Second)},
			{sensor: "host1/modbus/device 1/supplied", kind: "supplied", value: 1, time: arrived.Add(-2 * time.Second)},
			{sensor: "host1/modbus/device 1/big", kind: "big", value: 5, time: arrived.Add(-2 * time.Second)},
		}},
	{name: "line protocol batch with a bad line", topic: "telegraf/h/cpu",
		payload: "# comment\ncpu,cpu=cpu0 usage_idle=98.5\n\ncpu,cpu=cpu1 usage_idle=oops\r\ncpu\\ x,cpu=cpu2 usage_idle=F\n",
		want:    []want{{sensor: "h/cpu/usage_idle", kind: "usage_idle", value: 98.5}, {sensor: "h/cpu x/usage_idle", kind: "usage_idle", value: 0}},
		reasons: []Reason{ReasonBadLine}, errText: `item 3: field "usage_idle"`},
	{name: "line protocol all tags in id", topic: "telegraf-ms/x", payload: "weather,city=Bern,site=roof t=-3.5 " + ms(-time.Second),
		want: []want{{sensor: "weather/Bern/roof/t", kind: "t", value: -3.5, time: arrived.Add(-time.Second)}}},
	{name: "line protocol only strings", topic: "telegraf/h/log", payload: `log msg="hello"`, reasons: []Reason{ReasonNoValues}},
	{name: "line protocol junk", topic: "telegraf/h/x", payload: `just words`, reasons: []Reason{ReasonBadLine}},
	{name: "line protocol future", topic: "telegraf/h/x", payload: `m v=1 ` + itoa(arrived.Add(time.Hour).UnixNano()), reasons: []Reason{ReasonFutureTimestamp}},
	{name: "line protocol empty", topic: "telegraf/h/x", payload: "\n\n", reasons: []Reason{ReasonMissingValue}},

	// A hand-written values list.
	{name: "values list", topic: "diy/porch/state", payload: `{"env":{"t":4.5,"rh":"81"},"door":false,"rssi":-70,"ts":` + ms(-time.Second) + `}`,
		want: []want{
			{sensor: "porch/env/t", kind: "temperature", unit: "°C", value: 4.5, time: arrived.Add(-time.Second)},
			{sensor: "porch/env/rh", kind: "humidity", unit: "%", value: 81, time: arrived.Add(-time.Second)},
			{sensor: "porch/door", kind: "door", value: 0, time: arrived.Add(-time.Second)},
		}},
	{name: "values list bad value", topic: "diy/porch/state", payload: `{"env":{"t":"warm","rh":50}}`,
		want:    []want{{sensor: "porch/env/rh", kind: "humidity", unit: "%", value: 50}},
		reasons: []Reason{ReasonNotNumeric}, errText: `field "env.t"`},

	// Home Assistant discovery and Sparkplug rejections (the stateful
	// sequences are in TestDiscovery and TestSparkplug).
	{name: "discovery config not JSON", topic: "homeassistant/sensor/x/config", payload: `{"stat_t":`, reasons: []Reason{ReasonBadDiscovery}},
	{name: "discovery config without state topic", topic: "homeassistant/sensor/x/config", payload: `{"name":"x"}`, reasons: []Reason{ReasonBadDiscovery}},
	{name: "sparkplug junk", topic: "spBv1.0/plant/NDATA/edge9", payload: "\xff\xff\xff", reasons: []Reason{ReasonBadProtobuf}},
	{name: "sparkplug alias before birth", topic: "spBv1.0/plant/DDATA/edge9/pump", payload: string(spMsg(0, 3, spM{alias: 7, value: 1.5})),
		reasons: []Reason{ReasonUnknownAlias}},
	{name: "sparkplug STATE ignored", topic: "spBv1.0/STATE/scada1", payload: `{"online":true}`},
	{name: "sparkplug NCMD ignored", topic: "spBv1.0/plant/NCMD/edge9", payload: "\x00"},
}

func TestDecoder_Decode_devices(t *testing.T) {
	runDecodeTests(t, newDeviceDecoder(t), deviceTests)
}

func TestPresets(t *testing.T) {
	for _, name := range Presets() {
		ts, err := PresetTopics(name, "")
		if err != nil || len(ts) == 0 {
			t.Fatalf("PresetTopics(%q) = %v, %v", name, ts, err)
		}
		if ts[0].Format != FormatLiveness && ts[1].Format != FormatLiveness {
			t.Errorf("preset %s: no liveness topic first: %+v", name, ts[:2])
		}
		if _, err := New(Options{Topics: []Topic{{Preset: name, Prefix: "x/y"}}}); err != nil {
			t.Errorf("New(preset %s, prefix x/y) = %v", name, err)
		}
	}
	for _, tt := range []struct {
		topic Topic
		want  string
	}{
		{Topic{Preset: "tasmotta"}, `ingest.topics[0].preset: "tasmotta" is not one of tasmota, zigbee2mqtt`},
		{Topic{Preset: "tasmota", Pattern: "x/{sensor}"}, "ingest.topics[0]: a preset takes only prefix"},
		{Topic{Preset: "tasmota", Prefix: "a/+"}, "ingest.topics[0].prefix:"},
		{Topic{Pattern: "a/{sensor}", Prefix: "x"}, "ingest.topics[0].prefix: only a preset"},
		{Topic{Pattern: "a/{device}", Format: FormatJSON, Values: []Value{{Path: "a..b"}}}, "ingest.topics[0].values[0].path"},
		{Topic{Pattern: "a/{device}", Format: FormatNumber, Flatten: &Flatten{}}, "values and flatten need format json"},
		{Topic{Pattern: "a/{device}", Format: FormatJSON, Flatten: &Flatten{}, Values: []Value{{Path: "a"}}}, "exclusive"},
		{Topic{Pattern: "a/{device}/{n}", Format: FormatJSON, Flatten: &Flatten{}}, "unknown placeholder {n}"},
		{Topic{Pattern: "a/{device}", ID: "{device}/{x}", Format: FormatJSON, Flatten: &Flatten{}}, "ingest.topics[0].id:"},
		{Topic{Pattern: "a/{device}", Format: FormatJSON, Flatten: &Flatten{Depth: 99}}, "flatten.depth"},
		{Topic{Pattern: "a/{device}", Format: FormatLiveness, Online: []string{"up"}, Offline: []string{"UP"}}, "listed twice"},
		{Topic{Pattern: "a/{device}", Format: FormatJSON, IDTags: []string{"x"}}, "id_tags: need format line"},
		{Topic{Pattern: "a/{device}", Format: FormatLine, Time: "ts"}, "format line has no fields"},
		{Topic{Pattern: "a/{device}", Format: FormatJSON, Units: map[string]string{"a": "b"}}, "need values or flatten"},
	} {
		_, err := New(Options{Topics: []Topic{tt.topic}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v; want an error containing %q", tt.topic, err, tt.want)
		}
	}
}

// TestDiscovery feeds Home Assistant discovery configs as ESPHome and the HA
// docs publish them, then their state and availability topics.
func TestDiscovery(t *testing.T) {
	d := newDeviceDecoder(t)
	dec := func(topic, payload string) ([]agent.Reading, error) {
		t.Helper()
		return d.Decode(topic, []byte(payload), arrived, nil)
	}
	mustNil := func(topic, payload string) {
		t.Helper()
		if out, err := dec(topic, payload); err != nil || len(out) != 0 {
			t.Fatalf("Decode(%q) = %v, %v; want nothing", topic, out, err)
		}
	}
	// HA docs, mqtt.markdown "Sensors": two entities on one state topic.
	mustNil("homeassistant/sensor/sensorBedroomT/config",
		`{"device_class":"temperature","name":"Temperature","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"°C","value_template":"{{ value_json.temperature}}","unique_id":"temp01ae","device":{"identifiers":["bedroom01ae"],"name":"Bedroom"}}`)
	mustNil("homeassistant/sensor/sensorBedroomH/config",
		`{"device_class":"humidity","name":"Humidity","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"%","value_template":"{{ value_json['humidity'] | float }}","dev":{"ids":"bedroom01ae"}}`)
	// ESPHome style: abbreviated keys, node id, availability, no template.
	mustNil("homeassistant/sensor/livingroom/temperature/config",
		`{"dev_cla":"temperature","unit_of_meas":"°C","stat_cla":"measurement","name":"Temperature","stat_t":"livingroom/sensor/temperature/state","avty_t":"livingroom/status","uniq_id":"ESPsensortemperature","dev":{"ids":"aabbccddeeff","name":"livingroom","sw":"esphome v2024.11.1","mdl":"esp32dev","mf":"espressif"}}`)
	// "~" base topic and a round filter.
	mustNil("homeassistant/sensor/garden/soil/config",
		`{"~":"garden/soil","stat_t":"~/state","unit_of_meas":"%","val_tpl":"{{ value_json.moisture.raw | round(1) }}","avty":[{"t":"~/avail","pl_avail":"up","pl_not_avail":"down"}]}`)
	// Templates it does not evaluate: listed, not guessed.
	mustNil("homeassistant/sensor/boiler/flow/config",
		`{"stat_t":"boiler/state","unit_of_meas":"l/min","val_tpl":"{{ (value_json.flow | float) * 60 }}"}`)
	mustNil("homeassistant/sensor/boiler/mode/config",
		`{"stat_t":"boiler/state","val_tpl":"{% if value == '1' %}on{% endif %}"}`)
	mustNil("homeassistant/binary_sensor/door/contact/config", `{"stat_t":"door/state"}`)

	out, err := dec("homeassistant/sensor/sensorBedroom/state", `{ "temperature": 23.20, "humidity": 43.70 }`)
	if err != nil || len(out) != 2 {
		t.Fatalf("bedroom state = %+v, %v", out, err)
	}
	if r := out[0]; r.Sensor != "bedroom01ae/sensorBedroomT" || r.Kind != "temperature" || r.Unit != "°C" || r.Value != 23.2 {
		t.Errorf("bedroom temperature = %+v", r)
	}
	if r := out[1]; r.Sensor != "bedroom01ae/sensorBedroomH" || r.Kind != "humidity" || r.Unit != "%" || r.Value != 43.7 {
		t.Errorf("bedroom humidity = %+v", r)
	}
	// Discovery wins over the esphome preset, which would give no unit.
	out, err = dec("livingroom/sensor/temperature/state", "21.4")
	if err != nil || len(out) != 1 || out[0].Sensor != "livingroom/temperature" || out[0].Unit != "°C" || out[0].Kind != "temperature" {
		t.Errorf("livingroom state = %+v, %v", out, err)
	}
	out, err = dec("livingroom/status", "offline")
	if err != nil || len(out) != 1 || out[0].Sensor != "livingroom" || out[0].Flags != offline || out[0].Kind != KindLiveness {
		t.Errorf("livingroom status = %+v, %v", out, err)
	}
	out, err = dec("garden/soil/state", `{"moisture":{"raw":41.26}}`)
	if err != nil || len(out) != 1 || out[0].Sensor != "garden/soil" || out[0].Value != 41.3 || out[0].Unit != "%" {
		t.Errorf("garden state = %+v, %v", out, err)
	}
	out, err = dec("garden/soil/avail", "down")
	if err != nil || len(out) != 1 || out[0].Sensor != "garden" || out[0].Flags != offline {
		t.Errorf("garden availability = %+v, %v", out, err)
	}
	if _, err = dec("boiler/state", `{"flow":2}`); err == nil || !strings.Contains(err.Error(), "no topic template") {
		t.Errorf("boiler state (no supported entity) = %v; want no match", err)
	}
	un := d.UnsupportedTemplates()
	if len(un) != 2 || un[0].ConfigTopic != "homeassistant/sensor/boiler/flow/config" || un[0].Template == "" || un[0].Why == "" ||
		un[1].Sensor != "boiler/mode" {
		t.Errorf("UnsupportedTemplates = %+v", un)
	}
	if s := d.Stats(); s.DiscoveredSensors != 4 || s.UnsupportedTemplates != 2 {
		t.Errorf("Stats = %+v", s)
	}
	// An empty config deletes; the preset decodes the topic again.
	mustNil("homeassistant/sensor/livingroom/temperature/config", "")
	out, err = dec("livingroom/sensor/temperature/state", "21.4")
	if err != nil || len(out) != 1 || out[0].Unit != "" {
		t.Errorf("after delete: %+v, %v", out, err)
	}
	mustNil("homeassistant/sensor/boiler/flow/config", "")
	if un := d.UnsupportedTemplates(); len(un) != 1 {
		t.Errorf("after delete, UnsupportedTemplates = %+v", un)
	}
	// A bad state is rejected as by any codec.
	if _, err := dec("homeassistant/sensor/sensorBedroom/state", `{"temperature":"warm","humidity":1}`); len(Rejected(err)) != 1 {
		t.Errorf("bad bedroom state = %v; want one rejection", err)
	}
}

func TestParseValueTemplate(t *testing.T) {
	for _, tt := range []struct {
		tpl, path, filter string
		ok                bool
	}{
		{"{{ value }}", "", "", true},
		{"{{value_json.temperature}}", "temperature", "", true},
		{"{{ value_json.a.b }}", "a.b", "", true},
		{"{{ value_json['a b'] }}", "", "", false},
		{`{{ value_json["x"].y }}`, "x.y", "", true},
		{"{{ value | float }}", "", "float", true},
		{"{{ value_json.t | float(0) }}", "t", "float", true},
		{"{{ value | int }}", "", "int", true},
		{"{{ value | round(2) }}", "", "round", true},
		{"{{ value | multiply(0.1) }}", "", "", false},
		{"{{ value_json.a | float | round(1) }}", "", "", false},
		{"{{ value_json[0] }}", "", "", false},
		{"{{ states('sensor.x') }}", "", "", false},
		{"{{ value_json.a }} {{ value }}", "", "", false},
		{"value", "", "", false},
	} {
		path, filter, _, why := parseValueTemplate(tt.tpl)
		if (why == "") != tt.ok || tt.ok && (path != tt.path || filter != tt.filter) {
			t.Errorf("parseValueTemplate(%q) = %q, %q, why %q; want %q, %q, ok %v", tt.tpl, path, filter, why, tt.path, tt.filter, tt.ok)
		}
	}
}

// TestSparkplug runs an edge node's life: NBIRTH and DBIRTH name the metrics
// and aliases, NDATA and DDATA carry aliases only, a seq gap is flagged, a
// historical metric is kept out of live detection, DDEATH and NDEATH mark
// the device and node offline.
func TestSparkplug(t *testing.T) {
	d := newDeviceDecoder(t)
	ts := uint64(arrived.Add(-time.Second).UnixMilli())
	type step struct {
		topic   string
		payload []byte
		want    []want
		reasons []Reason
	}
	at := arrived.Add(-time.Second)
	for i, s := range []step{
		{"spBv1.0/plant/NBIRTH/edge1", spMsg(ts, 0,
			spM{name: "bdSeq", dtype: spInt64, value: int64(0)},
			spM{name: "Node Control/Rebirth", dtype: spBoolean, value: false},
			spM{name: "Inputs/Temperature", alias: 1, dtype: spFloat, value: float32(21.5), unit: "°C"},
			spM{name: "Inputs/Count", alias: 2, dtype: spInt16, value: int32(-3)},
			spM{name: "Status", alias: 3, dtype: 12, value: "RUNNING"}),
			[]want{{sensor: "plant/edge1", kind: KindLiveness, value: 1, time: at},
				{sensor: "plant/edge1/Inputs/Temperature", kind: "Temperature", unit: "°C", value: 21.5, time: at},
				{sensor: "plant/edge1/Inputs/Count", kind: "Count", value: -3, time: at}}, nil},
		{"spBv1.0/plant/DBIRTH/edge1/pump1", spMsg(ts, 1,
			spM{name: "Flow", alias: 10, dtype: spDouble, value: 3.25, unit: "m³/h"},
			spM{name: "Running", alias: 11, dtype: spBoolean, value: true}),
			[]want{{sensor: "plant/edge1/pump1", kind: KindLiveness, value: 1, time: at},
				{sensor: "plant/edge1/pump1/Flow", kind: "Flow", unit: "m³/h", value: 3.25, time: at},
				{sensor: "plant/edge1/pump1/Running", kind: "Running", value: 1, time: at}}, nil},
		{"spBv1.0/plant/NDATA/edge1", spMsg(ts, 2, spM{alias: 1, value: float32(22)}, spM{alias: 2, value: int32(7)}),
			[]want{{sensor: "plant/edge1/Inputs/Temperature", kind: "Temperature", unit: "°C", value: 22, time: at},
				{sensor: "plant/edge1/Inputs/Count", kind: "Count", value: 7, time: at}}, nil},
		// seq 3 was lost: the readings are suspect.
		{"spBv1.0/plant/DDATA/edge1/pump1", spMsg(ts, 4, spM{alias: 10, value: 3.5},
			spM{alias: 10, value: 2.0, hist: true, ts: uint64(arrived.Add(-time.Hour).UnixMilli())}),
			[]want{{sensor: "plant/edge1/pump1/Flow", kind: "Flow", unit: "m³/h", value: 3.5, time: at, flags: agent.FlagSuspect},
				{sensor: "plant/edge1/pump1/Flow", kind: "Flow", unit: "m³/h", value: 2, time: arrived.Add(-time.Hour),
					flags: agent.FlagSuspect | agent.FlagRetained}}, nil},
		{"spBv1.0/plant/DDATA/edge1/pump1", spMsg(ts, 5, spM{alias: 99, value: 1.0}, spM{alias: 11, value: false}),
			[]want{{sensor: "plant/edge1/pump1/Running", kind: "Running", value: 0, time: at}}, []Reason{ReasonUnknownAlias}},
		{"spBv1.0/plant/DDEATH/edge1/pump1", spMsg(ts, 6),
			[]want{{sensor: "plant/edge1/pump1", kind: KindLiveness, value: 0, time: at, flags: offline}}, nil},
		{"spBv1.0/plant/NDEATH/edge1", spMsg(0, -1, spM{name: "bdSeq", dtype: spInt64, value: int64(0)}),
			[]want{{sensor: "plant/edge1", kind: KindLiveness, value: 0, flags: offline}}, nil},
		// A rebirth forgets the old aliases.
		{"spBv1.0/plant/NBIRTH/edge1", spMsg(ts, 0, spM{name: "Inputs/Pressure", alias: 5, dtype: spDouble, value: 1.2}),
			[]want{{sensor: "plant/edge1", kind: KindLiveness, value: 1, time: at},
				{sensor: "plant/edge1/Inputs/Pressure", kind: "Pressure", value: 1.2, time: at}}, nil},
		{"spBv1.0/plant/NDATA/edge1", spMsg(ts, 1, spM{alias: 1, value: float32(22)}), nil, []Reason{ReasonUnknownAlias}},
	} {
		out, err := d.Decode(s.topic, s.payload, arrived, nil)
		var got []Reason
		for _, e := range Rejected(err) {
			got = append(got, e.Reason)
		}
		if !equal(got, s.reasons) {
			t.Fatalf("step %d %s: rejected %v (%v); want %v", i, s.topic, got, err, s.reasons)
		}
		if len(out) != len(s.want) {
			t.Fatalf("step %d %s: %d readings %+v; want %d", i, s.topic, len(out), out, len(s.want))
		}
		for j, w := range s.want {
			r, wt := out[j], w.time
			if wt.IsZero() {
				wt = arrived
			}
			if r.Sensor != w.sensor || r.Kind != w.kind || r.Unit != w.unit || r.Value != w.value || !r.Time.Equal(wt) || r.Flags != w.flags {
				t.Errorf("step %d %s: reading %d = %+v; want %+v at %v", i, s.topic, j, r, w, wt)
			}
		}
	}
	if s := d.Stats(); s.SparkplugSeqGaps != 1 || s.SparkplugBirths != 3 || s.SparkplugDeaths != 2 {
		t.Errorf("Stats = %+v", s)
	}
	// Group filter: other groups are not matched.
	g, err := New(Options{Sparkplug: &Sparkplug{Groups: []string{"plant"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Decode("spBv1.0/office/NDATA/e", spMsg(ts, 0), arrived, nil); err != ErrNoMatch {
		t.Errorf("other group: %v; want ErrNoMatch", err)
	}
}

// TestDiscovery_concurrent decodes states while configs come and go.
func TestDiscovery_concurrent(t *testing.T) {
	d := newDeviceDecoder(t)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			var out []agent.Reading
			for i := 0; i < 300; i++ {
				obj := "o" + itoa(int64(i%5))
				cfg := `{"stat_t":"st/` + obj + `","unit_of_meas":"°C","val_tpl":"{{ value_json.v }}","avty_t":"av/x"}`
				if (i+g)%7 == 0 {
					cfg = ""
				}
				if _, err := d.Decode("homeassistant/sensor/n"+itoa(int64(g))+"/"+obj+"/config", []byte(cfg), arrived, nil); err != nil {
					t.Error(err)
				}
				out, _ = d.Decode("st/"+obj, []byte(`{"v":1}`), arrived, out[:0])
				for _, r := range out {
					if r.Unit != "°C" || r.Value != 1 {
						t.Errorf("reading %+v", r)
					}
				}
				out, _ = d.Decode("av/x", []byte(`online`), arrived, out[:0])
				_ = d.UnsupportedTemplates()
				_ = d.Stats()
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
