package ingest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/edgeagent/edgeagent/agent"
)

// liveness.go: device liveness topics (Tasmota LWT, Zigbee2MQTT
// availability, ESPHome and Shelly status, Sparkplug NDEATH).
//
// A liveness message is not a measurement. Decode reports it as ONE reading
// of the device, not of its sensors:
//
//	Sensor = the device id (the topic's base id, e.g. "ds1820")
//	Kind   = KindLiveness ("liveness")
//	Value  = 1 online, 0 offline
//	Flags  = agent.FlagDeviceOffline when offline (agent.FlagRetained is
//	         added by agent.Intake when the broker replayed it)
//
// The device's sensors are exactly those whose id starts with Sensor+"/"
// (every preset builds ids that way), so a consumer can find them without a
// table. What the consumers must do with it is in docs/devices.md ("Device
// liveness"): the engine opens one device-level incident on the liveness
// sensor, inhibits value and silence alerts of the device's sensors while it
// lasts, and resolves it on the next online reading.

// DefaultOnline and DefaultOffline return the liveness payloads understood
// when a topic names none (compared case-insensitively).
func DefaultOnline() []string { return []string{"online", "true", "1", "up", "connected", "alive"} }

// DefaultOffline: see DefaultOnline.
func DefaultOffline() []string {
	return []string{"offline", "false", "0", "down", "disconnected", "lost", "dead"}
}

// IsLiveness reports whether r is a device liveness reading, not a
// measurement.
func IsLiveness(r *agent.Reading) bool { return r.Kind == KindLiveness }

// DeviceOf reports whether sensor belongs to device dev (the Sensor of a
// liveness reading): whether it has the prefix dev+"/".
func DeviceOf(sensor, dev string) bool {
	return len(sensor) > len(dev) && sensor[len(dev)] == '/' && sensor[:len(dev)] == dev
}

type liveWords struct {
	online, offline []string // lower case
}

func compileLive(key string, on, off []string) (liveWords, error) {
	if len(on) == 0 {
		on = DefaultOnline()
	}
	if len(off) == 0 {
		off = DefaultOffline()
	}
	var w liveWords
	seen := map[string]bool{}
	for _, l := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"online", on, &w.online}, {"offline", off, &w.offline}} {
		for j, s := range l.in {
			s = strings.ToLower(strings.TrimSpace(s))
			if s == "" || seen[s] {
				return w, fmt.Errorf("%s.%s[%d]: %q is empty or listed twice", key, l.name, j, l.in[j])
			}
			seen[s] = true
			*l.out = append(*l.out, s)
		}
	}
	return w, nil
}

// state returns 1 (online), 0 (offline) or -1 (neither) for a payload word.
func (w *liveWords) state(b []byte) int {
	for _, s := range w.online {
		if len(s) == len(b) && bytes.EqualFold([]byte(s), b) {
			return 1
		}
	}
	for _, s := range w.offline {
		if len(s) == len(b) && bytes.EqualFold([]byte(s), b) {
			return 0
		}
	}
	return -1
}

// liveness decodes a liveness message into one device reading.
func (d *Decoder) liveness(m *message, out []agent.Reading) ([]agent.Reading, error) {
	t := m.t
	b := trimSpace(m.payload)
	field := ""
	var sp [nFields]span
	if len(b) > 0 && b[0] == '{' && t.paths.active&(1<<fValue) != 0 {
		field = t.fields[fValue]
		s := scanner{b: m.payload}
		s.ws()
		ok := s.object(0, &t.paths, 0, t.paths.active, &sp)
		if ok && !s.end() {
			ok = s.fail("data after the JSON value")
		}
		if !ok {
			return out, &Error{Reason: ReasonBadJSON, Topic: m.topic, Index: -1, Err: s.err}
		}
		v := sp[fValue]
		if v.typ == 0 || v.typ == 'z' {
			return out, &Error{Reason: ReasonMissingValue, Topic: m.topic, Field: field, Index: -1, Err: fmt.Errorf("missing")}
		}
		b = m.payload[v.s:v.e]
	}
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	st := t.live.state(b)
	if st < 0 {
		return out, &Error{Reason: ReasonBadLiveness, Topic: m.topic, Field: field, Index: -1,
			Err: fmt.Errorf("%q is neither online (%s) nor offline (%s)", excerpt(b),
				strings.Join(t.live.online, ", "), strings.Join(t.live.offline, ", "))}
	}
	var buf [256]byte
	r := agent.Reading{Sensor: string(t.baseID(m, buf[:0])), Kind: KindLiveness, Value: float64(st), Time: m.arrived, Arrived: m.arrived}
	if st == 0 {
		r.Flags |= agent.FlagDeviceOffline
	}
	if p := checkID(r.Sensor, d.maxIDLen); p != nil {
		return out, &Error{Reason: p.reason, Topic: m.topic, Field: "{id}", Index: -1, Err: p.err}
	}
	if sp[fTime].typ != 0 {
		ts, ok, p := jsonTime(m.payload, sp[fTime], t.timeFormat, d.loc)
		if p == nil && ok {
			ts, r.Flags, p = d.stamp(m, ts)
			if st == 0 {
				r.Flags |= agent.FlagDeviceOffline
			}
			r.Time = ts
		}
		if p != nil {
			return out, &Error{Reason: p.reason, Topic: m.topic, Field: t.fields[fTime], Index: -1, Err: p.err}
		}
	}
	return append(out, r), nil
}
