package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/ingest"
	"github.com/edgeagent/edgeagent/storage"
)

// deviceConfig: the presets of the three device ecosystems, local time in
// UTC (Tasmota's Time), and a silence limit of 2 s on every sensor so that
// a device going offline would, without device liveness, raise one silence
// alert per sensor.
const deviceConfig = `
ingest:
  timezone: UTC
  topics:
    - {preset: tasmota}
    - {preset: zigbee2mqtt}
    - {preset: esphome}
rules:
  - name: default
    detectors: [{type: silence, after: 2s}]
`

// device is an MQTT client whose TCP connection the test can cut, so the
// broker publishes its will as for a device that lost power.
type device struct {
	c    paho.Client
	mu   sync.Mutex
	conn net.Conn
}

func connectDevice(t *testing.T, addr, id, willTopic, willPayload string) *device {
	t.Helper()
	d := &device{}
	o := paho.NewClientOptions().AddBroker("tcp://"+addr).SetClientID(id).SetAutoReconnect(false).
		SetBinaryWill(willTopic, []byte(willPayload), 1, true).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			d.mu.Lock()
			d.conn = c
			d.mu.Unlock()
			return c, err
		})
	d.c = paho.NewClient(o)
	if tok := d.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { d.c.Disconnect(0) })
	return d
}

func (d *device) pub(t *testing.T, topic string, retained bool, payload string) {
	t.Helper()
	if tok := d.c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// cut drops the TCP connection without DISCONNECT: the broker sends the will.
func (d *device) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn.Close()
}

// TestApp_devices publishes a Tasmota, a Zigbee2MQTT and an ESPHome device's
// real traffic over MQTT, checks sensors, units and times, then takes the
// devices offline (Tasmota and ESPHome by their last will, Zigbee2MQTT by
// its bridge's availability message) and expects exactly one
// device_offline alert per device and no silence alert on their sensors.
func TestApp_devices(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: seconds of wall time for the silence detector")
	}
	app := startApp(t, deviceConfig)
	addr := app.MQTTAddr()
	tas := connectDevice(t, addr, "DVES_ds1820", "tele/ds1820/LWT", "Offline")
	esp := connectDevice(t, addr, "livingroom", "livingroom/status", "offline")
	z2m := connectDevice(t, addr, "zigbee2mqtt-bridge", "zigbee2mqtt/bridge/state", `{"state":"offline"}`)
	tas.pub(t, "tele/ds1820/LWT", true, "Online")
	esp.pub(t, "livingroom/status", true, "online")
	z2m.pub(t, "zigbee2mqtt/bridge/state", true, `{"state":"online"}`)
	z2m.pub(t, "zigbee2mqtt/kitchen/WSDCGQ01LM/availability", true, `{"state":"online"}`)

	// Real traffic every 200 ms for 3 s: longer than the 2 s silence limit,
	// so the silence detectors are armed.
	var tasTime, z2mTime time.Time
	for i := range 15 {
		now := time.Now().UTC().Truncate(time.Second)
		tasTime, z2mTime = now.Add(-time.Second), now.Add(-2*time.Second)
		tas.pub(t, "tele/ds1820/SENSOR", false, fmt.Sprintf(
			`{"Time":"%s","DS18B20":{"Id":"030597946B04","Temperature":%.1f},"SI7021":{"Temperature":21.2,"Humidity":%.1f,"DewPoint":12.5},"TempUnit":"C"}`,
			tasTime.Format("2006-01-02T15:04:05"), 20.9+float64(i%3)/10, 58.0+float64(i%2)))
		z2m.pub(t, "zigbee2mqtt/kitchen/WSDCGQ01LM", false, fmt.Sprintf(
			`{"temperature":%.2f,"humidity":44.72,"pressure":1012.5,"battery":100,"voltage":3005,"linkquality":120,"last_seen":%d}`,
			27.34+float64(i%2)/10, z2mTime.UnixMilli()))
		esp.pub(t, "livingroom/sensor/temperature/state", true, strconv.FormatFloat(21.4+float64(i%2)/10, 'f', 1, 64))
		time.Sleep(200 * time.Millisecond)
	}
	want := map[string]struct {
		kind, unit string
		time       time.Time // zero: arrival, just now
	}{
		"ds1820/DS18B20/Temperature":     {"temperature", "°C", tasTime},
		"ds1820/SI7021/Temperature":      {"temperature", "°C", tasTime},
		"ds1820/SI7021/Humidity":         {"humidity", "%", tasTime},
		"ds1820/SI7021/DewPoint":         {"dew_point", "°C", tasTime},
		"kitchen/WSDCGQ01LM/temperature": {"temperature", "°C", z2mTime},
		"kitchen/WSDCGQ01LM/humidity":    {"humidity", "%", z2mTime},
		"kitchen/WSDCGQ01LM/pressure":    {"pressure", "hPa", z2mTime},
		"kitchen/WSDCGQ01LM/battery":     {"battery", "%", z2mTime},
		"kitchen/WSDCGQ01LM/voltage":     {"voltage", "mV", z2mTime},
		"livingroom/temperature":         {"temperature", "", time.Time{}},
		"ds1820":                         {ingest.KindLiveness, "", time.Time{}},
		"livingroom":                     {ingest.KindLiveness, "", time.Time{}},
		"kitchen/WSDCGQ01LM":             {ingest.KindLiveness, "", time.Time{}},
	}
	var latest map[string]agent.Reading
	eventually(t, "every device sensor stored", func() bool {
		var err error
		latest, err = app.store.Latest()
		if err != nil {
			t.Fatal(err)
		}
		for id := range want {
			if _, ok := latest[id]; !ok {
				return false
			}
		}
		return latest["ds1820/DS18B20/Temperature"].Time.Equal(tasTime)
	})
	for id, w := range want {
		r := latest[id]
		if r.Kind != w.kind || r.Unit != w.unit {
			t.Errorf("%s: kind %q unit %q; want %q %q", id, r.Kind, r.Unit, w.kind, w.unit)
		}
		if !w.time.IsZero() && !r.Time.Equal(w.time) {
			t.Errorf("%s: time %v; want %v (from the payload)", id, r.Time, w.time)
		}
		if w.time.IsZero() && time.Since(r.Time) > time.Minute {
			t.Errorf("%s: time %v; want the arrival time", id, r.Time)
		}
	}
	if _, ok := latest["kitchen/WSDCGQ01LM/linkquality"]; ok {
		t.Error("linkquality is a sensor; the zigbee2mqtt preset excludes it")
	}
	if n := len(latest); n != len(want) {
		t.Errorf("%d sensors stored; want %d: %v", n, len(want), latest)
	}

	// The devices go offline: two by their will, one by its bridge.
	tas.cut()
	esp.cut()
	z2m.pub(t, "zigbee2mqtt/kitchen/WSDCGQ01LM/availability", true, `{"state":"offline"}`)
	eventually(t, "three device_offline alerts", func() bool {
		return metric(t, app, `edgeagent_alerts_total{state="firing"}`) >= 3
	})
	time.Sleep(3 * time.Second) // past every sensor's silence limit
	alerts, _, err := app.store.Alerts(storage.AlertQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range alerts {
		got[a.Sensor] += a.Detector + ":" + string(a.State) + " "
		if a.Detector == anomaly.DetectorDeviceOffline && a.Reason != "device offline: its liveness topic says so" {
			t.Errorf("%s: reason %q; a will is news, not the broker's replay", a.Sensor, a.Reason)
		}
	}
	wantAlerts := map[string]string{
		"ds1820":             anomaly.DetectorDeviceOffline + ":firing ",
		"livingroom":         anomaly.DetectorDeviceOffline + ":firing ",
		"kitchen/WSDCGQ01LM": anomaly.DetectorDeviceOffline + ":firing ",
	}
	if fmt.Sprint(got) != fmt.Sprint(wantAlerts) {
		t.Errorf("alerts by sensor = %v; want one device_offline per device: %v", got, wantAlerts)
	}
	if n := metric(t, app, `edgeagent_alerts_total{state="firing"}`); n != 3 {
		t.Errorf("firing alerts = %v; want 3", n)
	}

	// Zigbee2MQTT's device comes back: its incident resolves, once.
	z2m.pub(t, "zigbee2mqtt/kitchen/WSDCGQ01LM/availability", true, `{"state":"online"}`)
	eventually(t, "the resolved device alert", func() bool {
		return metric(t, app, `edgeagent_alerts_total{state="resolved"}`) >= 1
	})
	alerts, _, err = app.store.Alerts(storage.AlertQuery{Sensor: "kitchen/WSDCGQ01LM", Limit: 10})
	if err != nil || len(alerts) != 1 || alerts[0].State != agent.AlertResolved {
		t.Errorf("kitchen alerts = %+v, %v; want one resolved incident", alerts, err)
	}
}
