package ingest

import (
	"testing"
	"time"
)

func benchDevice(b *testing.B, topic, payload string) {
	benchDecode(b, newDeviceDecoder(b), topic, []byte(payload))
}

func BenchmarkDecodeTasmota(b *testing.B) {
	benchDevice(b, "tele/ble-gw/SENSOR", `{"Time":"`+local(-time.Minute)+`","LYWSD03-52680f":{"Temperature":21.1,"Humidity":58.0,"DewPoint":12.5,"Battery":100},"TempUnit":"C"}`)
}

func BenchmarkDecodeZigbee2MQTT(b *testing.B) {
	benchDevice(b, "zigbee2mqtt/kitchen/WSDCGQ01LM", `{"temperature": 27.34, "humidity": 44.72, "battery": 100, "linkquality": 120, "voltage": 3005}`)
}

func BenchmarkDecodeShellyGen2(b *testing.B) {
	benchDevice(b, "shellyplus1pm-a8032ab12345/status/switch:0",
		`{"id":0,"source":"init","output":true,"apower":8.9,"voltage":230.6,"current":0.041,"aenergy":{"total":12.345,"by_minute":[0.0,0.0,0.0],"minute_ts":1732795200},"temperature":{"tC":41.2,"tF":106.2}}`)
}

func BenchmarkDecodeESPHome(b *testing.B) {
	benchDevice(b, "livingroom/sensor/temperature/state", "21.4")
}

func BenchmarkDecodeLiveness(b *testing.B) {
	benchDevice(b, "zigbee2mqtt/kitchen/WSDCGQ01LM/availability", `{"state":"offline"}`)
}

func BenchmarkDecodeLineProtocol(b *testing.B) {
	benchDevice(b, "telegraf/host1/modbus", `modbus,location=main\ building,source=device\ 1,status=ok temperature=21.4,count=3i,supplied=true `+
		itoa(arrived.Add(-2*time.Second).UnixNano()))
}

func BenchmarkDecodeSparkplugNDATA(b *testing.B) {
	d := newDeviceDecoder(b)
	ts := uint64(arrived.Add(-time.Second).UnixMilli())
	birth := spMsg(ts, 0, spM{name: "Inputs/Temperature", alias: 1, dtype: spFloat, value: float32(21.5), unit: "°C"},
		spM{name: "Inputs/Count", alias: 2, dtype: spInt16, value: int32(-3)}, spM{name: "Flow", alias: 3, dtype: spDouble, value: 2.5})
	if _, err := d.Decode("spBv1.0/plant/NBIRTH/edge1", birth, arrived, nil); err != nil {
		b.Fatal(err)
	}
	// seq stays the same: a gap every message, which costs nothing extra.
	benchDecode(b, d, "spBv1.0/plant/NDATA/edge1", spMsg(ts, 1, spM{alias: 1, value: float32(22)}, spM{alias: 2, value: int32(7)}, spM{alias: 3, value: 2.75}))
}

func BenchmarkDecodeHADiscoveryState(b *testing.B) {
	d := newDeviceDecoder(b)
	for _, c := range []string{
		`{"device_class":"temperature","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"°C","value_template":"{{ value_json.temperature}}"}`,
		`{"device_class":"humidity","state_topic":"homeassistant/sensor/sensorBedroom/state","unit_of_measurement":"%","value_template":"{{ value_json.humidity}}"}`,
	} {
		if _, err := d.Decode("homeassistant/sensor/bedroom/"+c[17:21]+"/config", []byte(c), arrived, nil); err != nil {
			b.Fatal(err)
		}
	}
	benchDecode(b, d, "homeassistant/sensor/sensorBedroom/state", []byte(`{ "temperature": 23.20, "humidity": 43.70 }`))
}
