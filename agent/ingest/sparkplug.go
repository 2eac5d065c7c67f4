package ingest

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgeagent/edgeagent/agent"
)

// sparkplug.go: Sparkplug B, read-only.
//
// Topics spBv1.0/<group>/<type>/<edge node>[/<device>]. The payload is the
// Tahu protobuf Payload message (proto2, package org.eclipse.tahu.protobuf).
// It is decoded here by hand with protowire from the field numbers of the
// schema, not from generated code, so no EPL-2.0 file is copied into this
// repository (see docs/devices.md, "Sparkplug B"). The fields read:
//
//	Payload  1 timestamp uint64 (ms UTC), 2 metrics repeated Metric, 3 seq uint64
//	Metric   1 name, 2 alias, 3 timestamp, 4 datatype, 5 is_historical,
//	         7 is_null, 9 properties PropertySet, 10 int_value uint32,
//	         11 long_value uint64, 12 float_value, 13 double_value, 14 boolean_value
//	PropertySet   1 keys repeated string, 2 values repeated PropertyValue
//	PropertyValue 8 string_value
//
// Readings: sensor group/node[/device]/<metric name>, kind the last '/' level of
// the name, unit from the metric property named Sparkplug.UnitProperty (in the
// BIRTH or the DATA message), time the metric's timestamp, else the payload's,
// else arrival. Per edge node the decoder keeps the alias table of the last
// NBIRTH and DBIRTHs and the last seq: a seq that does not follow (mod 256)
// flags the message's readings agent.FlagSuspect and counts a gap (Stats).
// NBIRTH/DBIRTH give an online liveness reading (see liveness.go) for the node
// or device, NDEATH/DDEATH an offline one. is_historical metrics are flagged
// agent.FlagRetained: history, not live detection. String, bytes, DataSet,
// Template and DateTime metrics, bdSeq and "Node Control/…" are skipped.
// NCMD, DCMD and STATE are matched and ignored: the decoder never writes.

// Sparkplug configures Sparkplug B decoding.
type Sparkplug struct {
	// Groups are the group ids decoded; empty means all. Other groups' topics
	// are not matched (ErrNoMatch).
	Groups []string
	// UnitProperty is the metric property holding the unit. "" means "engUnit"
	// (Ignition's); Sparkplug standardises none.
	UnitProperty string
}

// The Sparkplug B datatypes the decoder reads as numbers.
const (
	spInt8, spInt16, spInt32, spInt64     = 1, 2, 3, 4
	spUInt8, spUInt16, spUInt32, spUInt64 = 5, 6, 7, 8
	spFloat, spDouble, spBoolean          = 9, 10, 11
	spDateTime                            = 13
)

// maxSPNodes bounds the edge nodes whose alias tables are kept.
const maxSPNodes = 4096

type spState struct {
	groups   map[string]bool
	unitProp string
	mu       sync.Mutex
	nodes    map[string]*spNode // by "group/node"
}

type spNode struct {
	aliases map[uint64]spAlias
	seq     int // last seq; -1 before any
}

type spAlias struct {
	name, unit string
	dtype      uint32
}

func newSPState(o Sparkplug) (*spState, error) {
	s := &spState{unitProp: o.UnitProperty, nodes: map[string]*spNode{}}
	if s.unitProp == "" {
		s.unitProp = "engUnit"
	}
	if len(o.Groups) > 0 {
		s.groups = map[string]bool{}
		for i, g := range o.Groups {
			if g == "" || strings.ContainsAny(g, "/+#") {
				return nil, fmt.Errorf("ingest.sparkplug.groups[%d]: %q is not a group id", i, g)
			}
			s.groups[g] = true
		}
	}
	return s, nil
}

// spMetric is one decoded Metric.
type spMetric struct {
	name       string
	alias      uint64
	hasAlias   bool
	ts         uint64
	dtype      uint32
	historical bool
	null       bool
	field      protowire.Number // the value's field number; 0 when none
	raw        uint64           // the value's bits
	unit       string
}

type spPayload struct {
	ts      uint64
	seq     uint64
	hasSeq  bool
	metrics []spMetric
}

// parseSPPayload decodes a Payload message.
func parseSPPayload(b []byte, unitProp string) (spPayload, error) {
	var p spPayload
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, fmt.Errorf("payload tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			p.ts, n = protowire.ConsumeVarint(b)
		case num == 3 && typ == protowire.VarintType:
			p.seq, n = protowire.ConsumeVarint(b)
			p.hasSeq = true
		case num == 2 && typ == protowire.BytesType:
			var mb []byte
			mb, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				m, err := parseSPMetric(mb, unitProp)
				if err != nil {
					return p, fmt.Errorf("metric %d: %w", len(p.metrics), err)
				}
				p.metrics = append(p.metrics, m)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return p, fmt.Errorf("payload field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return p, nil
}

func parseSPMetric(b []byte, unitProp string) (spMetric, error) {
	var m spMetric
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		switch {
		case num == 1 && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			m.name = string(s)
		case num == 2 && typ == protowire.VarintType:
			m.alias, n = protowire.ConsumeVarint(b)
			m.hasAlias = true
		case num == 3 && typ == protowire.VarintType:
			m.ts, n = protowire.ConsumeVarint(b)
		case num == 4 && typ == protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
			m.dtype = uint32(v)
		case num == 5 && typ == protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
			m.historical = v != 0
		case num == 7 && typ == protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
			m.null = v != 0
		case num == 9 && typ == protowire.BytesType:
			var ps []byte
			ps, n = protowire.ConsumeBytes(b)
			if n >= 0 {
				u, err := spUnit(ps, unitProp)
				if err != nil {
					return m, fmt.Errorf("properties: %w", err)
				}
				m.unit = u
			}
		case (num == 10 || num == 11 || num == 14) && typ == protowire.VarintType:
			m.raw, n = protowire.ConsumeVarint(b)
			m.field = num
		case num == 12 && typ == protowire.Fixed32Type:
			var f uint32
			f, n = protowire.ConsumeFixed32(b)
			m.raw, m.field = uint64(f), num
		case num == 13 && typ == protowire.Fixed64Type:
			m.raw, n = protowire.ConsumeFixed64(b)
			m.field = num
		case num >= 15 && num <= 19:
			m.field = num // string, bytes, dataset, template, extension: not numeric
			n = protowire.ConsumeFieldValue(num, typ, b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return m, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return m, nil
}

// spUnit returns the string value of property key in a PropertySet.
func spUnit(b []byte, key string) (string, error) {
	idx, want := 0, -1
	vi := 0
	unit := ""
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			var k []byte
			k, n = protowire.ConsumeBytes(b)
			if n >= 0 && want < 0 && string(k) == key {
				want = idx
			}
			idx++
		case num == 2 && typ == protowire.BytesType:
			var pv []byte
			pv, n = protowire.ConsumeBytes(b)
			if n >= 0 && vi == want {
				for len(pv) > 0 {
					pn, pt, k := protowire.ConsumeTag(pv)
					if k < 0 {
						return "", protowire.ParseError(k)
					}
					pv = pv[k:]
					if pn == 8 && pt == protowire.BytesType {
						var s []byte
						s, k = protowire.ConsumeBytes(pv)
						if u, ok := unitString(s); ok && k >= 0 {
							unit = u
						}
					} else {
						k = protowire.ConsumeFieldValue(pn, pt, pv)
					}
					if k < 0 {
						return "", protowire.ParseError(k)
					}
					pv = pv[k:]
				}
			}
			vi++
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return unit, nil
}

// spValue converts a metric's value by its datatype; ok is false for null,
// non-numeric and unknown values.
func spValue(m *spMetric, dtype uint32) (float64, bool) {
	if m.null {
		return 0, false
	}
	switch m.field {
	case 10:
		switch dtype {
		case spInt8:
			return float64(int8(m.raw)), true
		case spInt16:
			return float64(int16(m.raw)), true
		case spUInt8, spUInt16, spUInt32:
			return float64(uint32(m.raw)), true
		}
		return float64(int32(uint32(m.raw))), true
	case 11:
		switch dtype {
		case spDateTime:
			return 0, false
		case spUInt64, spUInt32:
			return float64(m.raw), true
		}
		return float64(int64(m.raw)), true
	case 12:
		v := float64(math.Float32frombits(uint32(m.raw)))
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case 13:
		v := math.Float64frombits(m.raw)
		return v, !math.IsNaN(v) && !math.IsInf(v, 0)
	case 14:
		if m.raw != 0 {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// sparkplug decodes one Sparkplug B message; ok is false when the topic is not
// one the decoder handles (the templates are tried next).
func (d *Decoder) sparkplug(topic string, payload []byte, arrived time.Time, out []agent.Reading) ([]agent.Reading, error, bool) {
	s := d.sp
	rest, found := strings.CutPrefix(topic, "spBv1.0/")
	if !found {
		return out, nil, false
	}
	lv := strings.Split(rest, "/")
	if len(lv) < 2 || lv[0] == "STATE" {
		return out, nil, len(lv) >= 1 && lv[0] == "STATE"
	}
	if len(lv) < 3 || len(lv) > 4 || (s.groups != nil && !s.groups[lv[0]]) {
		return out, nil, false
	}
	group, typ, node := lv[0], lv[1], lv[2]
	device := ""
	if len(lv) == 4 {
		device = lv[3]
	}
	switch typ {
	case "NCMD", "DCMD":
		return out, nil, true
	case "NBIRTH", "NDEATH", "NDATA":
		if device != "" {
			return out, nil, false
		}
	case "DBIRTH", "DDEATH", "DDATA":
		if device == "" {
			return out, nil, false
		}
	default:
		return out, nil, false
	}
	rej := func(r Reason, format string, args ...any) ([]agent.Reading, error, bool) {
		return out, &Error{Reason: r, Topic: topic, Index: -1, Err: fmt.Errorf(format, args...)}, true
	}
	if len(payload) > d.maxPayload {
		return rej(ReasonPayloadTooLarge, "payload of %d bytes is larger than %d", len(payload), d.maxPayload)
	}
	p, err := parseSPPayload(payload, s.unitProp)
	if err != nil {
		return rej(ReasonBadProtobuf, "%v", err)
	}
	nodeID := group + "/" + node
	dev := nodeID
	if device != "" {
		dev += "/" + device
	}
	if p := checkID(dev, d.maxIDLen); p != nil {
		return rej(p.reason, "%v", p.err)
	}
	m := message{topic: topic, payload: payload, arrived: arrived}
	live := func(online bool) agent.Reading {
		r := agent.Reading{Sensor: dev, Kind: KindLiveness, Value: 1, Time: arrived, Arrived: arrived}
		if !online {
			r.Value, r.Flags = 0, agent.FlagDeviceOffline
		}
		if p.ts != 0 {
			if ts, f, e := d.stamp(&m, time.UnixMilli(int64(p.ts))); e == nil && p.ts <= math.MaxInt64 {
				r.Time, r.Flags = ts, r.Flags|f
			}
		}
		return r
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil && len(s.nodes) >= maxSPNodes {
		return rej(ReasonBadSensorID, "more than %d edge nodes", maxSPNodes)
	}
	if n == nil || typ == "NBIRTH" {
		n = &spNode{aliases: map[uint64]spAlias{}, seq: -1}
		s.nodes[nodeID] = n
	}
	var flags agent.Flags
	switch {
	case typ == "NDEATH": // no seq: it is the broker's will
		d.stats.deaths.Add(1)
		return append(out, live(false)), nil, true
	case !p.hasSeq:
	case typ == "NBIRTH":
		n.seq = int(p.seq % 256)
	default:
		if n.seq >= 0 && int(p.seq%256) != (n.seq+1)%256 {
			flags |= agent.FlagSuspect
			d.stats.seqGaps.Add(1)
		}
		n.seq = int(p.seq % 256)
	}
	if typ == "DDEATH" {
		d.stats.deaths.Add(1)
		r := live(false)
		r.Flags |= flags
		return append(out, r), nil, true
	}
	birth := typ == "NBIRTH" || typ == "DBIRTH"
	if birth {
		d.stats.births.Add(1)
		r := live(true)
		r.Flags |= flags
		out = append(out, r)
	}
	var errs Errors
	for i := range p.metrics {
		mt := &p.metrics[i]
		a, known := spAlias{}, false
		if mt.hasAlias {
			a, known = n.aliases[mt.alias]
		}
		name, unit, dtype := mt.name, mt.unit, mt.dtype
		if name == "" {
			name = a.name
		}
		if unit == "" {
			unit = a.unit
		}
		if dtype == 0 {
			dtype = a.dtype
		}
		if birth && mt.hasAlias && mt.name != "" {
			n.aliases[mt.alias] = spAlias{name: mt.name, unit: unit, dtype: dtype}
		}
		if name == "" {
			if !known {
				errs = append(errs, &Error{Reason: ReasonUnknownAlias, Topic: topic, Field: "metrics", Index: i,
					Err: fmt.Errorf("alias %d has no name: no BIRTH named it", mt.alias)})
			}
			continue
		}
		if name == "bdSeq" || strings.HasPrefix(name, "Node Control/") {
			continue
		}
		v, ok := spValue(mt, dtype)
		if !ok {
			continue
		}
		r := agent.Reading{Sensor: dev + "/" + name, Kind: name[strings.LastIndexByte(name, '/')+1:], Unit: unit,
			Value: v, Time: arrived, Arrived: arrived, Flags: flags}
		if mt.historical {
			r.Flags |= agent.FlagRetained
		}
		ms := mt.ts
		if ms == 0 {
			ms = p.ts
		}
		if ms != 0 {
			if ms > math.MaxInt64/2 {
				errs = append(errs, &Error{Reason: ReasonBadTimestamp, Topic: topic, Field: name, Index: i, Err: fmt.Errorf("timestamp %d is out of range", ms)})
				continue
			}
			ts, f, pr := d.stamp(&m, time.UnixMilli(int64(ms)))
			if pr != nil && !mt.historical {
				errs = append(errs, &Error{Reason: pr.reason, Topic: topic, Field: name, Index: i, Err: pr.err})
				continue
			}
			if pr == nil {
				r.Time, r.Flags = ts, r.Flags|f
			}
		}
		if pr := checkID(r.Sensor, d.maxIDLen); pr != nil {
			errs = append(errs, &Error{Reason: pr.reason, Topic: topic, Field: name, Index: i, Err: pr.err})
			continue
		}
		if pr := checkID(r.Kind, d.maxIDLen); pr != nil {
			errs = append(errs, &Error{Reason: pr.reason, Topic: topic, Field: name, Index: i, Err: pr.err})
			continue
		}
		out = append(out, r)
	}
	if len(errs) > 0 {
		return out, errs, true
	}
	return out, nil, true
}
