package anomaly

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/edgeagent/edgeagent/agent"
)

// device.go: device liveness as ONE incident per device.
//
// A liveness reading (Kind KindLiveness, as agent/ingest decodes Tasmota LWT,
// Zigbee2MQTT availability, ESPHome status, Sparkplug NDEATH, …) says whether
// the device Sensor is online (Value 1) or offline (Value 0 with
// agent.FlagDeviceOffline). Its sensors are those whose id starts with
// Sensor+"/". The Engine:
//
//   - runs no filters or detectors on a liveness reading;
//   - opens one incident per device on offline: a firing alert with Detector
//     "device_offline" on the device id, and resolves it on online;
//   - while the device is offline, holds its sensors' silence alerts (the
//     device is known to be down: one incident, not one per sensor);
//   - after it comes back, counts its sensors' silence from that moment, so
//     a sensor that reports every 5 minutes is not silent at once.
//
// Readings of one sensor go to one shard, but a device and its sensors
// hash to different shards, so the offline set is shared: Options.Devices.

// KindLiveness is the kind of a device liveness reading (agent/ingest's
// ingest.KindLiveness).
const KindLiveness = "liveness"

// DetectorDeviceOffline names the device-level incident in alerts.
const DetectorDeviceOffline = "device_offline"

// Devices is the liveness of devices, shared by the engines of all shards.
// It is safe for concurrent use.
type Devices struct {
	mu   sync.RWMutex
	devs map[string]devState
	n    atomic.Int64 // len(devs), for a lock-free fast path
}

type devState struct {
	offline bool
	since   int64 // when it went offline or came back (gateway ns)
}

// NewDevices returns an empty liveness table.
func NewDevices() *Devices { return &Devices{devs: map[string]devState{}} }

func (d *Devices) set(dev string, offline bool, since int64) {
	d.mu.Lock()
	d.devs[dev] = devState{offline: offline, since: since}
	d.n.Store(int64(len(d.devs)))
	d.mu.Unlock()
}

// state returns the state of the device sensor belongs to: the longest
// known id that is a '/'-prefix of sensor.
func (d *Devices) state(sensor string) (devState, bool) {
	if d.n.Load() == 0 {
		return devState{}, false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	var st devState
	found := false
	for i := 0; i < len(sensor); i++ {
		if sensor[i] == '/' {
			if s, ok := d.devs[sensor[:i]]; ok {
				st, found = s, true
			}
		}
	}
	return st, found
}

// Offline reports whether sensor belongs to a device known to be offline.
func (d *Devices) Offline(sensor string) bool {
	st, ok := d.state(sensor)
	return ok && st.offline
}

// devIncident is an open device_offline incident of this shard.
type devIncident struct {
	id     string
	since  int64
	reason string
}

// liveness handles a liveness reading: no detectors, one incident per device.
func (e *Engine) liveness(r agent.Reading, res *agent.Result, alerts []agent.Alert) []agent.Alert {
	*res = agent.Result{Reading: r, Raw: r.Value}
	offline := r.Flags&agent.FlagDeviceOffline != 0 || r.Value == 0
	t := r.Time.UnixNano()
	e.devices.set(r.Sensor, offline, r.Arrived.UnixNano())
	inc := e.devs[r.Sensor]
	a := agent.Alert{Gateway: e.gateway, Sensor: r.Sensor, Kind: r.Kind, Detector: DetectorDeviceOffline,
		Score: 1, Value: r.Value, UpdatedAt: r.Time.UTC()}
	switch {
	case offline && inc == nil:
		reason := "device offline: its liveness topic says so"
		if r.Flags&agent.FlagRetained != 0 {
			reason += " (last known state, replayed by the broker)"
		}
		inc = &devIncident{id: uuid.Must(uuid.NewV7()).String(), since: t, reason: reason}
		if e.devs == nil {
			e.devs = map[string]*devIncident{}
		}
		e.devs[strings.Clone(r.Sensor)] = inc
		a.State, a.Reason = agent.AlertFiring, reason
		e.metrics.count(evFiring)
	case !offline && inc != nil:
		delete(e.devs, r.Sensor)
		a.State, a.Reason, a.ResolvedAt = agent.AlertResolved, inc.reason+"; now online", a.UpdatedAt
		e.metrics.count(evResolved)
	default:
		return alerts
	}
	a.ID, a.StartedAt = inc.id, time.Unix(0, inc.since).UTC()
	return append(alerts, a)
}

// holdSilence reports whether the silence of s must wait: its device is
// offline (re-check in a while) or came back after s last reported (count
// from the return). until is when to look again.
func (e *Engine) holdSilence(s *sensor, now int64) (until int64, hold bool) {
	st, ok := e.devices.state(s.id)
	switch {
	case !ok:
		return 0, false
	case st.offline:
		return now + int64(10*time.Second), true
	case st.since > s.silence.lastSeen:
		if dl := st.since + s.silence.limit(); now < dl {
			return dl, true
		}
	}
	return 0, false
}
