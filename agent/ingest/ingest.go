// Package ingest turns MQTT messages into readings. A topic template
// ("sensors/{sensor}/{kind}") maps the topic to a sensor id and kind; a
// payload codec (JSON with field paths, a bare number, auto, JSON batch arrays,
// the JSON mapping of many leaves, InfluxDB line protocol, device liveness)
// turns the payload into values and times. Every payload or batch item it
// cannot turn into a valid reading is rejected with a Reason the caller counts.
//
// Device ecosystems come as presets (Tasmota, Zigbee2MQTT, Shelly Gen1/Gen2,
// ESPHome, thin-edge.io; presets.go) built from the same mechanism, with
// their liveness topics decoded into one liveness reading per device
// (liveness.go). Opt-in: Home Assistant discovery (discovery.go) and
// Sparkplug B (sparkplug.go). docs/devices.md shows the config of each.
//
// The package does no I/O, starts no goroutines and has no package state. A
// Decoder is safe for concurrent use; its configured topics are immutable,
// and the only state it keeps is the Home Assistant entities and Sparkplug
// alias tables, behind locks.
//
// # Topic templates
//
// A template is an MQTT topic filter whose levels may be placeholders; each is
// a whole level:
//
//	literal   matches that exact level
//	+         matches any one level (not captured)
//	{sensor}  matches any one level and captures it as the sensor id; {kind} as the kind
//	{sensor+} matches one or more levels and captures them joined by "/"
//	{name}    any other name ([a-z][a-z0-9_]*): a capture for Topic.ID
//	          ("{device}/{channel}"); {device} is the device of the mapping
//	#         last level only: matches zero or more levels (not captured)
//
// A template has at most one {name+} or #. As in MQTT, a topic starting with
// '$' matches only a template whose first level is a literal. Templates are
// tried in order and the first match decodes the message; a topic no template
// matches gives ErrNoMatch.
//
// # Payloads
//
// Format "json" takes a JSON document:
//
//   - an object: the value, time, sensor id and unit are read from the
//     configured field paths ("value", "ts", nested "a.b.c"; a key holding a
//     dot cannot be addressed);
//   - an array (a batch): each item is such an object or a bare value, and
//     yields one reading; bad items are rejected one by one (see Errors);
//   - a scalar: the value itself.
//
// Format "number" takes the payload as the value: "21.7", " -3e2\n", also
// quoted ("\"21.7\""). Format "auto" (the default) is "json" when the payload
// starts with '{' or '[' and "number" otherwise.
//
// A value is a JSON number, a numeric string ("21.7"), or a boolean (1 or 0).
// null, "", "None", "null", "unavailable", "unknown", "n/a" are
// missing_value; "NaN", "Inf" and numbers beyond float64 are not_finite.
//
// # Times
//
// See TimeFormat. An absent or null time field means the arrival time. A time
// before Options.MinTime (a device whose clock was never set, booted in
// 1970) is replaced by the arrival time and the reading marked
// agent.FlagRestamped; a time more than Options.MaxSkew after arrival is
// rejected (future_timestamp). Times may lie arbitrarily far in the past.
//
// # Sensor ids
//
// The id is the sensor field of the payload when the topic names one and the
// payload has it (a string), else the {sensor} (or {sensor+}) capture of the
// topic. Ids and kinds must be 1 to MaxIDLen bytes of UTF-8 without control
// characters. A unit from the payload that is not a short clean string is
// ignored in favour of the topic's fixed Unit.
package ingest

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// Options configures a Decoder. The zero value decodes the default topic.
type Options struct {
	// Topics are tried in order; the first whose Pattern matches a topic
	// decodes its messages. Empty means DefaultTopics().
	Topics []Topic
	// MaxPayload bounds a payload in bytes. Zero means 4096.
	MaxPayload int
	// MaxSkew is how far after its arrival a reading's time may lie. Zero
	// means 60s.
	MaxSkew time.Duration
	// MaxIDLen bounds sensor ids and kinds in bytes. Zero means 128.
	MaxIDLen int
	// MinTime: earlier payload times come from an unset clock and are replaced
	// by the arrival time (agent.FlagRestamped). Zero means 2000-01-01 UTC.
	MinTime time.Time
	// Location is the zone of TimeLocal times (Tasmota's "Time"). Nil means
	// time.Local.
	Location *time.Location
	// HomeAssistant, when set, consumes Home Assistant MQTT discovery configs
	// and decodes the state topics they name (see discovery.go). Nil: off.
	HomeAssistant *HomeAssistant
	// Sparkplug, when set, decodes Sparkplug B on spBv1.0/# (see sparkplug.go).
	// Nil: off.
	Sparkplug *Sparkplug
}

// Topic is one topic template and the codec of its payloads.
type Topic struct {
	Pattern    string     // "sensors/{sensor}/{kind}"; see the template syntax in template.go
	Format     string     // "json", "number" or "auto"; "" means "auto"
	Value      string     // JSON path of the value; "" means "value"
	Time       string     // JSON path of the time; "" means none (arrival time)
	TimeFormat TimeFormat // "" means TimeAuto
	Sensor     string     // JSON path of a sensor id that overrides {sensor}; "" means none
	Kind       string     // fixed kind, used when the pattern has no {kind}
	Unit       string     // fixed unit
	UnitField  string     // JSON path of a unit that overrides Unit; "" means none

	// Preset, when set, stands for the preset's topics (see Presets); Prefix
	// then replaces the preset's topic prefix ("" keeps it). The other fields
	// must be empty.
	Preset, Prefix string

	// ID builds the base sensor id from captures: "{device}/ext_temperature/{n}".
	// Empty captures are left out with their '/'. "" means "{device}/{sensor}".
	// Every placeholder other than {sensor}, {kind} and {device} must appear here.
	ID string
	// Values or Flatten select mapping mode (format json): one JSON object
	// yields a reading per named or numeric leaf, with sensor id
	// {base id}/{leaf path with '/' for '.'}. See mapping.go.
	Values  []Value
	Flatten *Flatten
	// Units gives a mapped leaf's unit by its key ("Power": "W"). The values
	// "@1" and "@2" mean the unit named by the payload field at UnitFields[0]
	// or [1] (Tasmota "TempUnit": "C" is °C).
	Units      map[string]string
	UnitFields []string
	// Kinds gives a mapped leaf's kind by its key ("tC": "temperature"); else
	// the kind is the key, lower-cased when LowerKind.
	Kinds     map[string]string
	LowerKind bool

	// Online and Offline are the payloads (case-insensitive, after trimming;
	// the Value field's string when the payload is JSON) of a FormatLiveness
	// topic. Empty means DefaultOnline and DefaultOffline.
	Online, Offline []string

	// IDTags are the tags (in order) whose values join the measurement in a
	// FormatLine sensor id: measurement/tag1/tag2/field. Empty means all tags
	// in sorted order as they appear in the line.
	IDTags []string
}

// The payload formats a Topic may name.
const (
	FormatJSON   = "json"
	FormatNumber = "number"
	FormatAuto   = "auto"
	// FormatLiveness: the payload says whether the device of the base id is
	// online ("Online", "true", {"state":"online"}); see liveness.go.
	FormatLiveness = "liveness"
	// FormatLine: InfluxDB line protocol, one reading per numeric field.
	FormatLine = "line"
	// FormatIgnore: the topic matches but carries no readings (status,
	// command and bridge topics a preset must not mistake for data).
	FormatIgnore = "ignore"
)

// Formats lists every payload format.
func Formats() []string {
	return []string{FormatJSON, FormatNumber, FormatAuto, FormatLiveness, FormatLine, FormatIgnore}
}

// DefaultTopics is the template used when Options.Topics is empty:
// sensors/{sensor}/{kind} carrying {"value": 21.7, "ts": 1732800000000} or 21.7.
func DefaultTopics() []Topic {
	return []Topic{{Pattern: "sensors/{sensor}/{kind}", Format: FormatAuto, Value: "value", Time: "ts", Sensor: "sensor"}}
}

// maxUnitLen bounds a unit string.
const maxUnitLen = 32

// format selects a codec. Adding a payload format (a device preset) means a
// constant here, a name in New, and a case in Decoder.decode that appends the
// payload's readings through Decoder.reading or Decoder.emit, so every codec
// validates the same way.
type format uint8

const (
	formatAuto format = iota
	formatJSON
	formatNumber
	formatLiveness
	formatLine
	formatIgnore
	formatMapped // json with Values or Flatten
)

type topic struct {
	index      int
	tmpl       *template
	format     format
	paths      paths
	fields     [nFields]string // the paths as configured, for messages
	timeFormat TimeFormat
	kind, unit string
	id         []idPart // base id template
	mapping    *mapping
	live       liveWords
	idTags     []string
}

// Decoder decodes MQTT messages into readings. It is safe for concurrent use.
type Decoder struct {
	topics     []*topic
	maxPayload int
	maxSkew    time.Duration
	maxIDLen   int
	minTime    time.Time
	loc        *time.Location
	ha         *haState // nil when discovery is off
	sp         *spState // nil when Sparkplug is off
	stats      stats
	walkers    sync.Pool // *walker, reused by the JSON mapping
}

// New checks opts and builds a Decoder. Its errors name the key path of the
// bad setting as in the config file: `ingest.topics[1].pattern: …`.
func New(opts Options) (*Decoder, error) {
	d := &Decoder{maxPayload: opts.MaxPayload, maxSkew: opts.MaxSkew, maxIDLen: opts.MaxIDLen, minTime: opts.MinTime, loc: opts.Location}
	if d.loc == nil {
		d.loc = time.Local
	}
	if d.maxPayload == 0 {
		d.maxPayload = 4096
	}
	if d.maxSkew == 0 {
		d.maxSkew = 60 * time.Second
	}
	if d.maxIDLen == 0 {
		d.maxIDLen = 128
	}
	if d.minTime.IsZero() {
		d.minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	switch {
	case d.maxPayload < 0:
		return nil, fmt.Errorf("ingest.max_payload: %d must not be negative", opts.MaxPayload)
	case d.maxSkew < 0:
		return nil, fmt.Errorf("ingest.max_skew: %v must not be negative", opts.MaxSkew)
	case d.maxIDLen < 0:
		return nil, fmt.Errorf("ingest.max_id_len: %d must not be negative", opts.MaxIDLen)
	}
	topics := opts.Topics
	if len(topics) == 0 {
		topics = DefaultTopics()
	}
	for i, tc := range topics {
		if tc.Preset != "" {
			pts, err := presetTopics(i, tc)
			if err != nil {
				return nil, err
			}
			for _, pt := range pts {
				t, err := d.compile(i, pt)
				if err != nil {
					return nil, fmt.Errorf("preset %s: %w", tc.Preset, err)
				}
				d.topics = append(d.topics, t)
			}
			continue
		}
		if tc.Prefix != "" {
			return nil, fmt.Errorf("ingest.topics[%d].prefix: only a preset has a prefix", i)
		}
		t, err := d.compile(i, tc)
		if err != nil {
			return nil, err
		}
		d.topics = append(d.topics, t)
	}
	if opts.HomeAssistant != nil {
		ha, err := newHAState(d, *opts.HomeAssistant)
		if err != nil {
			return nil, err
		}
		d.ha = ha
	}
	if opts.Sparkplug != nil {
		sp, err := newSPState(*opts.Sparkplug)
		if err != nil {
			return nil, err
		}
		d.sp = sp
	}
	return d, nil
}

func (d *Decoder) compile(i int, tc Topic) (*topic, error) {
	key := fmt.Sprintf("ingest.topics[%d]", i)
	tmpl, err := parseTemplate(tc.Pattern)
	if err != nil {
		return nil, fmt.Errorf("%s.pattern: %w", key, err)
	}
	t := &topic{index: i, tmpl: tmpl, kind: tc.Kind, unit: tc.Unit, timeFormat: tc.TimeFormat}
	switch tc.Format {
	case FormatAuto, "":
		t.format = formatAuto
	case FormatJSON:
		t.format = formatJSON
	case FormatNumber:
		t.format = formatNumber
	case FormatLiveness:
		t.format = formatLiveness
	case FormatLine:
		t.format = formatLine
	case FormatIgnore:
		t.format = formatIgnore
	default:
		return nil, fmt.Errorf("%s.format: %q is not one of %s", key, tc.Format, strings.Join(Formats(), ", "))
	}
	if len(tc.Values) > 0 || tc.Flatten != nil {
		if t.format != formatJSON {
			return nil, fmt.Errorf("%s.format: values and flatten need format json", key)
		}
		mp, err := compileMapping(key, &tc)
		if err != nil {
			return nil, err
		}
		t.format, t.mapping = formatMapped, mp
		if tc.Value != "" || tc.Sensor != "" || tc.UnitField != "" {
			return nil, fmt.Errorf("%s: value, sensor and unit_field do not apply to values or flatten", key)
		}
		if len(tc.UnitFields) > 2 {
			return nil, fmt.Errorf("%s.unit_fields: at most 2", key)
		}
	} else if len(tc.Units) > 0 || len(tc.UnitFields) > 0 || len(tc.Kinds) > 0 {
		return nil, fmt.Errorf("%s: units, unit_fields and kinds need values or flatten", key)
	}
	if t.format == formatJSON || t.format == formatAuto {
		if tc.Value == "" {
			tc.Value = "value"
		}
	}
	var root, uf1, uf2 string
	if t.mapping != nil && tc.Flatten != nil {
		root = tc.Flatten.Root
	}
	if len(tc.UnitFields) > 0 {
		uf1 = tc.UnitFields[0]
	}
	if len(tc.UnitFields) > 1 {
		uf2 = tc.UnitFields[1]
	}
	for f, p := range [nFields]struct{ key, path string }{
		{"value", tc.Value}, {"time", tc.Time}, {"sensor", tc.Sensor}, {"unit_field", tc.UnitField},
		{"flatten.root", root}, {"unit_fields[0]", uf1}, {"unit_fields[1]", uf2},
	} {
		if p.path == "" {
			continue
		}
		switch {
		case t.format == formatNumber:
			return nil, fmt.Errorf("%s.%s: format number has no fields; use json or auto", key, p.key)
		case t.format == formatLine || t.format == formatIgnore:
			return nil, fmt.Errorf("%s.%s: format %s has no fields", key, p.key, tc.Format)
		}
		segs := strings.Split(p.path, ".")
		for _, s := range segs {
			if s == "" {
				return nil, fmt.Errorf("%s.%s: %q has an empty path segment", key, p.key, p.path)
			}
		}
		if len(segs) >= maxDepth {
			return nil, fmt.Errorf("%s.%s: %q is nested deeper than %d", key, p.key, p.path, maxDepth-1)
		}
		t.paths.segs[f] = segs
		t.paths.active |= 1 << f
		t.fields[f] = p.path
	}
	switch tc.TimeFormat {
	case "":
		t.timeFormat = TimeAuto
		if t.format == formatLine {
			t.timeFormat = TimeUnixNs
		}
	case TimeAuto, TimeUnixS, TimeUnixMs, TimeUnixUs, TimeUnixNs, TimeRFC3339, TimeLocal:
	default:
		var names []string
		for _, f := range TimeFormats() {
			names = append(names, string(f))
		}
		return nil, fmt.Errorf("%s.time_format: %q is not one of %s", key, tc.TimeFormat, strings.Join(names, ", "))
	}
	id := tc.ID
	if id == "" {
		id = "{device}/{sensor}"
		if tmpl.index("device") < 0 {
			id = "{sensor}"
		}
		if tmpl.sensor < 0 {
			id = strings.TrimSuffix(id, "/{sensor}")
		}
	}
	for _, n := range tmpl.names {
		if n != "sensor" && n != "kind" && n != "device" && !strings.Contains(id, "{"+n+"}") {
			return nil, fmt.Errorf("%s.pattern: %q: unknown placeholder {%s} (want {sensor}, {kind}, {device}, or one the id uses)", key, tc.Pattern, n)
		}
	}
	if id != "{sensor}" && id != "" {
		if t.id, err = compileID(id, tmpl); err != nil {
			return nil, fmt.Errorf("%s.id: %w", key, err)
		}
	} else if tmpl.sensor >= 0 {
		t.id = []idPart{{capture: tmpl.sensor}}
	}
	needID := t.format != formatLine && t.format != formatIgnore
	if needID && len(t.id) == 0 && tc.Sensor == "" {
		return nil, fmt.Errorf("%s.pattern: %q has no {sensor} placeholder and the topic no sensor field", key, tc.Pattern)
	}
	if t.format == formatLiveness {
		if t.live, err = compileLive(key, tc.Online, tc.Offline); err != nil {
			return nil, err
		}
	} else if len(tc.Online) > 0 || len(tc.Offline) > 0 {
		return nil, fmt.Errorf("%s: online and offline need format liveness", key)
	}
	if len(tc.IDTags) > 0 && t.format != formatLine {
		return nil, fmt.Errorf("%s.id_tags: need format line", key)
	}
	t.idTags = tc.IDTags
	if tc.Kind != "" {
		if p := checkID(tc.Kind, d.maxIDLen); p != nil {
			return nil, fmt.Errorf("%s.kind: %w", key, p.err)
		}
	}
	if len(tc.Unit) > maxUnitLen || checkID(tc.Unit+"u", maxUnitLen+1) != nil {
		return nil, fmt.Errorf("%s.unit: %q must be at most %d bytes without control characters", key, tc.Unit, maxUnitLen)
	}
	return t, nil
}

// Decode appends the readings in payload to out and returns out.
//
// It returns ErrNoMatch when no template matches topic (out unchanged); a
// *Error when the whole payload is rejected (out unchanged); Errors when some
// items of a batch were rejected (the good ones are appended). Use Rejected to
// count them. Every appended reading has a finite Value, a valid Sensor, a
// Time no later than arrived+MaxSkew, and Arrived set to arrived.
//
// Captures of topic are kept in readings as substrings; payload is not
// retained. Decode is safe for concurrent use and never panics.
func (d *Decoder) Decode(topic string, payload []byte, arrived time.Time, out []agent.Reading) ([]agent.Reading, error) {
	if d.sp != nil {
		if out, err, ok := d.sparkplug(topic, payload, arrived, out); ok {
			return out, err
		}
	}
	if d.ha != nil {
		if out, err, ok := d.ha.decode(topic, payload, arrived, out); ok {
			return out, err
		}
	}
	m := message{topic: topic, payload: payload, arrived: arrived}
	for _, t := range d.topics {
		if t.tmpl.match(topic, &m.caps) {
			m.t = t
			return d.decode(&m, out)
		}
	}
	return out, ErrNoMatch
}

// message is one MQTT message whose topic matched m.t.
type message struct {
	topic   string
	t       *topic
	caps    captures
	payload []byte
	arrived time.Time
}

func (d *Decoder) decode(m *message, out []agent.Reading) ([]agent.Reading, error) {
	if len(m.payload) > d.maxPayload {
		return out, &Error{Reason: ReasonPayloadTooLarge, Topic: m.topic, Index: -1,
			Err: fmt.Errorf("payload of %d bytes is larger than %d", len(m.payload), d.maxPayload)}
	}
	switch m.t.format {
	case formatNumber:
		return d.number(m, out)
	case formatJSON:
		return d.json(m, out)
	case formatMapped:
		return d.mapped(m, out)
	case formatLiveness:
		return d.liveness(m, out)
	case formatLine:
		return d.line(m, out)
	case formatIgnore:
		return out, nil
	default:
		switch b := trimSpace(m.payload); {
		case len(b) > 0 && (b[0] == '{' || b[0] == '['):
			return d.json(m, out)
		default:
			return d.number(m, out)
		}
	}
}

// number decodes a bare value.
func (d *Decoder) number(m *message, out []agent.Reading) ([]agent.Reading, error) {
	b := trimSpace(m.payload)
	var v float64
	var p *problem
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && !hasEscape(b[1:len(b)-1]) {
		v, p = decimal(b[1 : len(b)-1])
	} else {
		v, p = decimal(b)
	}
	if p != nil {
		return out, &Error{Reason: p.reason, Topic: m.topic, Index: -1, Err: fmt.Errorf("payload %w", p.err)}
	}
	r, e := d.emit(m, nil, nil, v, -1)
	if e != nil {
		return out, e
	}
	return append(out, r), nil
}

// json decodes an object, a batch array, or a scalar.
func (d *Decoder) json(m *message, out []agent.Reading) ([]agent.Reading, error) {
	s := scanner{b: m.payload}
	s.ws()
	if s.i == len(s.b) {
		return out, &Error{Reason: ReasonMissingValue, Topic: m.topic, Index: -1, Err: fmt.Errorf("empty payload")}
	}
	if s.peek() == '[' {
		return d.batch(m, &s, out)
	}
	var sp [nFields]span
	var ok bool
	whole := s.peek() != '{'
	if whole {
		sp[fValue], ok = s.value(0)
	} else {
		ok = s.object(0, &m.t.paths, 0, m.t.paths.active, &sp)
	}
	if ok && !s.end() {
		ok = s.fail("data after the JSON value")
	}
	if !ok {
		return out, &Error{Reason: ReasonBadJSON, Topic: m.topic, Index: -1, Err: s.err}
	}
	r, e := d.reading(m, &sp, whole, -1)
	if e != nil {
		return out, e
	}
	return append(out, r), nil
}

// end skips trailing white space and reports whether the payload ends there.
func (s *scanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// batch decodes a JSON array of readings at s.
func (d *Decoder) batch(m *message, s *scanner, out []agent.Reading) ([]agent.Reading, error) {
	base := len(out)
	var errs Errors
	s.i++ // '['
	s.ws()
	ok := true
	if s.peek() == ']' {
		s.i++
	} else {
		for idx := 0; ok; idx++ {
			var sp [nFields]span
			whole := s.peek() != '{'
			if whole {
				sp[fValue], ok = s.value(1)
			} else {
				ok = s.object(1, &m.t.paths, 0, m.t.paths.active, &sp)
			}
			if !ok {
				break
			}
			if r, e := d.reading(m, &sp, whole, idx); e != nil {
				errs = append(errs, e)
			} else {
				out = append(out, r)
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
				s.ws()
				continue
			case ']':
				s.i++
			default:
				ok = s.fail("invalid character after array element")
			}
			break
		}
	}
	if ok && !s.end() {
		ok = s.fail("data after the JSON value")
	}
	if !ok {
		clear(out[base:])
		return out[:base], &Error{Reason: ReasonBadJSON, Topic: m.topic, Index: -1, Err: s.err}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

// reading builds one reading from the spans of a JSON object, or from a
// scalar in sp[fValue] when whole is set. idx is the batch item, -1 if none.
func (d *Decoder) reading(m *message, sp *[nFields]span, whole bool, idx int) (agent.Reading, *Error) {
	b, t := m.payload, m.t
	field := t.fields[fValue]
	if whole {
		field = ""
	}
	v, p := jsonValue(b, sp[fValue])
	if p != nil {
		return agent.Reading{}, &Error{Reason: p.reason, Topic: m.topic, Field: field, Index: idx, Err: p.err}
	}
	return d.emit(m, b, sp, v, idx)
}

// emit validates and builds a reading of value v: the sensor id, kind, unit
// and time come from the JSON spans in sp when present (sp may be nil), else
// from the topic. Every codec builds its readings here.
func (d *Decoder) emit(m *message, b []byte, sp *[nFields]span, v float64, idx int) (agent.Reading, *Error) {
	t := m.t
	r := agent.Reading{Value: v, Time: m.arrived, Arrived: m.arrived, Kind: t.kind, Unit: t.unit}
	bad := func(p *problem, field string) (agent.Reading, *Error) {
		return agent.Reading{}, &Error{Reason: p.reason, Topic: m.topic, Field: field, Index: idx, Err: p.err}
	}

	sensorField := "{sensor}"
	if sp != nil && sp[fSensor].typ != 0 && sp[fSensor].typ != 'z' {
		sensorField = t.fields[fSensor]
		s := sp[fSensor]
		if s.typ != '"' {
			return bad(fail(ReasonBadSensorID, "%s is not a string", excerpt(b[s.s:s.e])), sensorField)
		}
		r.Sensor, _ = unquote(b[s.s:s.e])
	} else if len(t.id) == 1 && t.id[0].capture >= 0 {
		r.Sensor = m.caps[t.id[0].capture]
	} else if len(t.id) > 0 {
		sensorField = "{id}"
		var buf [256]byte
		r.Sensor = string(t.baseID(m, buf[:0]))
	}
	if p := checkID(r.Sensor, d.maxIDLen); p != nil {
		return bad(p, sensorField)
	}
	if t.tmpl.kind >= 0 {
		r.Kind = m.caps[t.tmpl.kind]
		if p := checkID(r.Kind, d.maxIDLen); p != nil {
			return bad(p, "{kind}")
		}
	}
	if sp != nil && sp[fUnit].typ == '"' {
		if u, ok := unitString(b[sp[fUnit].s+1 : sp[fUnit].e-1]); ok {
			r.Unit = u
		}
	}
	if sp != nil {
		ts, ok, p := jsonTime(b, sp[fTime], t.timeFormat, d.loc)
		if p != nil {
			return bad(p, t.fields[fTime])
		}
		if ok {
			switch {
			case ts.Before(d.minTime):
				r.Flags |= agent.FlagRestamped
			case ts.After(m.arrived.Add(d.maxSkew)):
				return bad(fail(ReasonFutureTimestamp, "%s is %v after arrival (max_skew %v)",
					ts.UTC().Format(time.RFC3339Nano), ts.Sub(m.arrived).Round(time.Millisecond), d.maxSkew), t.fields[fTime])
			default:
				r.Time = ts
			}
		}
	}
	return r, nil
}

// unitString returns u as a string, without allocating for common units; ok
// is false when u is empty, too long, escaped or holds control characters.
func unitString(u []byte) (s string, ok bool) {
	if len(u) == 0 || len(u) > maxUnitLen {
		return "", false
	}
	switch string(u) {
	case "°C":
		return "°C", true
	case "°F":
		return "°F", true
	case "C":
		return "C", true
	case "%":
		return "%", true
	case "hPa":
		return "hPa", true
	case "Pa":
		return "Pa", true
	case "V":
		return "V", true
	case "A":
		return "A", true
	case "W":
		return "W", true
	case "kWh":
		return "kWh", true
	case "Wh":
		return "Wh", true
	case "lx":
		return "lx", true
	case "ppm":
		return "ppm", true
	case "dBm":
		return "dBm", true
	}
	for _, c := range u {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "", false
		}
	}
	return string(u), true
}
