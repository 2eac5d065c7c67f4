package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// discovery.go: Home Assistant MQTT discovery (opt-in).
//
// Config topics <prefix>/<component>/[<node_id>/]<object_id>/config carry a
// JSON config, usually retained; an empty payload deletes the entity. Of the
// components only "sensor" creates a mapping; others are accepted and ignored.
// Abbreviated keys (stat_t, unit_of_meas, val_tpl, …) are expanded and a
// topic starting or ending with "~" gets the "~" base. The mapping:
//
//	sensor id  <node_id>/<object_id>, else <first device identifier>/<object_id>,
//	           else unique_id, else object_id
//	kind       device_class ("" when absent)
//	unit       unit_of_measurement
//	value      state_topic's payload through value_template
//	time       arrival (HA states carry none)
//	liveness   availability_topic (or availability[].topic) with
//	           payload_available / payload_not_available, as a liveness
//	           reading of the device: <node_id>, else the first identifier
//
// value_template forms understood (white space free):
//
//	{{ value }}  {{ value_json.a.b }}  {{ value_json['a'] }}  {{ value_json["a"] }}
//	each optionally followed by | float, | int, | float(x), | int(x), | round(n)
//
// Any other template is not guessed: the entity gets no mapping and is listed
// by UnsupportedTemplates (for the status API and web view).
//
// State topics of discovered entities are decoded before the configured
// templates, so discovery (with units) wins over a preset (without).

// HomeAssistant configures discovery.
type HomeAssistant struct {
	// Prefix is the discovery prefix. "" means "homeassistant".
	Prefix string
	// MaxEntities bounds the discovered sensors. Zero means 1000.
	MaxEntities int
}

// UnsupportedTemplate is a discovered entity whose value_template the decoder
// does not evaluate, so it has no readings.
type UnsupportedTemplate struct {
	ConfigTopic string `json:"config_topic"`
	Sensor      string `json:"sensor"`
	StateTopic  string `json:"state_topic"`
	Template    string `json:"template"`
	Why         string `json:"why"`
}

type haState struct {
	d           *Decoder
	prefix      string
	max         int
	mu          sync.RWMutex
	entities    map[string]*haEntity // by config topic
	states      map[string][]*haEntity
	avail       map[string][]*haEntity
	unsupported map[string]UnsupportedTemplate
}

type haEntity struct {
	config, state, availTopic string
	device                    string // liveness sensor id
	t                         *topic
	live                      liveWords
	filter                    string // "", "float", "int", "round"
	digits                    int
}

func newHAState(d *Decoder, o HomeAssistant) (*haState, error) {
	h := &haState{d: d, prefix: o.Prefix, max: o.MaxEntities, entities: map[string]*haEntity{},
		states: map[string][]*haEntity{}, avail: map[string][]*haEntity{}, unsupported: map[string]UnsupportedTemplate{}}
	if h.prefix == "" {
		h.prefix = "homeassistant"
	}
	if h.max == 0 {
		h.max = 1000
	}
	if h.max < 0 || strings.ContainsAny(h.prefix, "+#") {
		return nil, fmt.Errorf("ingest.homeassistant_discovery: bad prefix %q or max_entities %d", o.Prefix, o.MaxEntities)
	}
	return h, nil
}

// UnsupportedTemplates lists the discovered entities whose value_template is
// not evaluated, sorted by config topic. It is empty when discovery is off.
func (d *Decoder) UnsupportedTemplates() []UnsupportedTemplate {
	if d.ha == nil {
		return nil
	}
	d.ha.mu.RLock()
	out := make([]UnsupportedTemplate, 0, len(d.ha.unsupported))
	for _, u := range d.ha.unsupported {
		out = append(out, u)
	}
	d.ha.mu.RUnlock()
	slices.SortFunc(out, func(a, b UnsupportedTemplate) int { return strings.Compare(a.ConfigTopic, b.ConfigTopic) })
	return out
}

// haLong expands the abbreviations edgeagent reads (HA mqtt.markdown).
func haLong(k string) string {
	switch k {
	case "stat_t":
		return "state_topic"
	case "unit_of_meas":
		return "unit_of_measurement"
	case "dev_cla":
		return "device_class"
	case "val_tpl":
		return "value_template"
	case "avty_t":
		return "availability_topic"
	case "avty":
		return "availability"
	case "uniq_id":
		return "unique_id"
	case "obj_id":
		return "object_id"
	case "pl_avail":
		return "payload_available"
	case "pl_not_avail":
		return "payload_not_available"
	case "dev":
		return "device"
	case "ids":
		return "identifiers"
	case "t":
		return "topic"
	}
	return k
}

// decode handles topic when discovery knows it; ok is false otherwise.
func (h *haState) decode(name string, payload []byte, arrived time.Time, out []agent.Reading) ([]agent.Reading, error, bool) {
	rest, found := strings.CutPrefix(name, h.prefix)
	if found && rest == "/status" {
		return out, nil, true // Home Assistant's birth and will
	}
	if found && strings.HasPrefix(rest, "/") && strings.HasSuffix(rest, "/config") {
		rest = rest[1:]
		return out, h.config(name, strings.Split(strings.TrimSuffix(rest, "/config"), "/"), payload), true
	}
	h.mu.RLock()
	es, as := h.states[name], h.avail[name]
	h.mu.RUnlock()
	if len(es) == 0 && len(as) == 0 {
		return out, nil, false
	}
	var errs Errors
	add := func(err error) {
		errs = append(errs, Rejected(err)...)
	}
	for _, e := range es {
		base := len(out)
		m := message{topic: name, payload: payload, arrived: arrived, t: e.t}
		var err error
		out, err = h.d.decode(&m, out)
		add(err)
		for i := base; i < len(out); i++ {
			switch e.filter {
			case "int":
				out[i].Value = math.Trunc(out[i].Value)
			case "round":
				p := math.Pow10(e.digits)
				if v := math.Round(out[i].Value*p) / p; !math.IsInf(v, 0) && !math.IsNaN(v) {
					out[i].Value = v
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range as {
		if seen[e.device] {
			continue
		}
		seen[e.device] = true
		m := message{topic: name, payload: payload, arrived: arrived, t: &topic{tmpl: noTemplate(), format: formatLiveness,
			live: e.live, id: []idPart{{lit: e.device, capture: -1}}}}
		var err error
		out, err = h.d.liveness(&m, out)
		add(err)
	}
	switch len(errs) {
	case 0:
		return out, nil, true
	case 1:
		return out, errs[0], true
	}
	return out, errs, true
}

func noTemplate() *template { return &template{multi: -1, sensor: -1, kind: -1} }

// config applies one discovery config; levels are the topic levels between
// the prefix and "/config".
func (h *haState) config(topic string, levels []string, payload []byte) error {
	bad := func(format string, args ...any) error {
		return &Error{Reason: ReasonBadDiscovery, Topic: topic, Index: -1, Err: fmt.Errorf(format, args...)}
	}
	if len(levels) != 2 && len(levels) != 3 {
		return bad("want <component>/[<node_id>/]<object_id>/config")
	}
	component, node, object := levels[0], "", levels[len(levels)-1]
	if len(levels) == 3 {
		node = levels[1]
	}
	if len(trimSpace(payload)) == 0 {
		h.remove(topic)
		return nil
	}
	if len(payload) > 64<<10 {
		return bad("config of %d bytes is larger than 64 KiB", len(payload))
	}
	var raw map[string]any
	if err := json.Unmarshal(payload, &raw); err != nil {
		return bad("config is not a JSON object: %v", err)
	}
	if component != "sensor" {
		h.remove(topic)
		return nil
	}
	c := expand(raw)
	str := func(k string) string { s, _ := c[k].(string); return s }
	base := str("~")
	topicOf := func(k string) string {
		t := str(k)
		switch {
		case strings.HasPrefix(t, "~"):
			return base + t[1:]
		case strings.HasSuffix(t, "~"):
			return t[:len(t)-1] + base
		}
		return t
	}
	e := &haEntity{config: topic, state: topicOf("state_topic")}
	if e.state == "" || strings.ContainsAny(e.state, "+#") {
		return bad("state_topic %q is missing or has wildcards", e.state)
	}
	dev := node
	if dev == "" {
		if d, ok := c["device"].(map[string]any); ok {
			switch ids := d["identifiers"].(type) {
			case string:
				dev = ids
			case []any:
				if len(ids) > 0 {
					dev, _ = ids[0].(string)
				}
			}
		}
	}
	id := object
	switch {
	case dev != "":
		id = dev + "/" + object
	case str("unique_id") != "":
		id = str("unique_id")
	}
	if p := checkID(id, h.d.maxIDLen); p != nil {
		return bad("sensor id: %v", p.err)
	}
	tc := Topic{Format: FormatNumber, Kind: str("device_class"), Unit: str("unit_of_measurement")}
	if !validUnit(tc.Unit) {
		tc.Unit = ""
	}
	if tc.Kind != "" && checkID(tc.Kind, h.d.maxIDLen) != nil {
		tc.Kind = ""
	}
	tpl := str("value_template")
	if tpl != "" {
		path, filter, digits, why := parseValueTemplate(tpl)
		if why != "" {
			h.mu.Lock()
			h.removeLocked(topic)
			h.unsupported[topic] = UnsupportedTemplate{ConfigTopic: topic, Sensor: id, StateTopic: e.state, Template: tpl, Why: why}
			h.mu.Unlock()
			return nil
		}
		if path != "" {
			tc.Format, tc.Value = FormatJSON, path
		}
		e.filter, e.digits = filter, digits
	}
	t, err := h.d.compileEntity(tc, id)
	if err != nil {
		return bad("%v", err)
	}
	e.t = t
	// Availability.
	av := topicOf("availability_topic")
	if av == "" {
		if l, ok := c["availability"].([]any); ok && len(l) > 0 {
			if a, ok := l[0].(map[string]any); ok {
				a = expand(a)
				av, _ = a["topic"].(string)
				if strings.HasPrefix(av, "~") {
					av = base + av[1:]
				}
			}
		}
	}
	if av != "" && !strings.ContainsAny(av, "+#") {
		e.availTopic = av
		e.device = dev
		if e.device == "" {
			e.device = id
		}
		var on, off []string
		if s := str("payload_available"); s != "" {
			on = []string{s}
		}
		if s := str("payload_not_available"); s != "" {
			off = []string{s}
		}
		if e.live, err = compileLive("availability", on, off); err != nil {
			return bad("%v", err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.entities[topic]; !ok && len(h.entities) >= h.max {
		return bad("more than %d discovered entities (max_entities)", h.max)
	}
	h.removeLocked(topic)
	h.entities[topic] = e
	h.states[e.state] = append(slices.Clip(h.states[e.state]), e)
	if e.availTopic != "" {
		h.avail[e.availTopic] = append(slices.Clip(h.avail[e.availTopic]), e)
	}
	return nil
}

func (h *haState) remove(topic string) {
	h.mu.Lock()
	h.removeLocked(topic)
	h.mu.Unlock()
}

// removeLocked drops the entity of a config topic; the slices are replaced,
// never modified, as readers iterate them without the lock.
func (h *haState) removeLocked(topic string) {
	delete(h.unsupported, topic)
	e := h.entities[topic]
	if e == nil {
		return
	}
	delete(h.entities, topic)
	drop := func(m map[string][]*haEntity, k string) {
		l := slices.DeleteFunc(slices.Clone(m[k]), func(x *haEntity) bool { return x == e })
		if len(l) == 0 {
			delete(m, k)
		} else {
			m[k] = l
		}
	}
	drop(h.states, e.state)
	if e.availTopic != "" {
		drop(h.avail, e.availTopic)
	}
}

// expand returns c with abbreviated keys expanded (device keys too).
func expand(c map[string]any) map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		k = haLong(k)
		if k == "device" {
			if d, ok := v.(map[string]any); ok {
				v = expand(d)
			}
		}
		out[k] = v
	}
	return out
}

// compileEntity builds the topic of a discovered entity with a fixed id.
func (d *Decoder) compileEntity(tc Topic, id string) (*topic, error) {
	t := &topic{tmpl: noTemplate(), kind: tc.Kind, unit: tc.Unit, timeFormat: TimeAuto, id: []idPart{{lit: id, capture: -1}}}
	t.format = formatNumber
	if tc.Format == FormatJSON {
		t.format = formatJSON
		segs, err := splitPath(tc.Value)
		if err != nil {
			return nil, fmt.Errorf("value_template path: %w", err)
		}
		t.paths.segs[fValue] = segs
		t.paths.active = 1 << fValue
		t.fields[fValue] = tc.Value
	}
	return t, nil
}

// parseValueTemplate understands the restricted forms in the file comment.
// It returns the JSON path ("" for the bare value), a filter and its digits,
// or why the template is not understood.
func parseValueTemplate(tpl string) (path, filter string, digits int, why string) {
	s := strings.TrimSpace(tpl)
	if !strings.HasPrefix(s, "{{") || !strings.HasSuffix(s, "}}") || strings.Count(s, "{{") != 1 {
		return "", "", 0, "not a single {{ expression }}"
	}
	parts := strings.Split(strings.TrimSpace(s[2:len(s)-2]), "|")
	expr := strings.TrimSpace(parts[0])
	switch {
	case expr == "value":
	case strings.HasPrefix(expr, "value_json"):
		var segs []string
		for r := expr[len("value_json"):]; r != ""; {
			switch {
			case r[0] == '.':
				j := strings.IndexAny(r[1:], ".[")
				if j < 0 {
					j = len(r) - 1
				}
				segs = append(segs, r[1:1+j])
				r = r[1+j:]
			case strings.HasPrefix(r, "['") || strings.HasPrefix(r, `["`):
				q := r[1]
				j := strings.IndexByte(r[2:], q)
				if j < 0 || len(r) < j+4 || r[j+3] != ']' {
					return "", "", 0, "unterminated [' '] key"
				}
				segs = append(segs, r[2:2+j])
				r = r[j+4:]
			default:
				return "", "", 0, fmt.Sprintf("cannot evaluate %q", r)
			}
		}
		if len(segs) == 0 {
			return "", "", 0, "value_json without a key"
		}
		for _, sg := range segs {
			if sg == "" || strings.Contains(sg, ".") || !isIdent(sg) {
				return "", "", 0, fmt.Sprintf("key %q is not supported", sg)
			}
		}
		path = strings.Join(segs, ".")
	default:
		return "", "", 0, fmt.Sprintf("expression %q is neither value nor value_json", expr)
	}
	if len(parts) > 2 {
		return "", "", 0, "more than one filter"
	}
	if len(parts) == 2 {
		f := strings.ReplaceAll(parts[1], " ", "")
		name, arg, hasArg := strings.Cut(f, "(")
		if hasArg {
			if !strings.HasSuffix(arg, ")") {
				return "", "", 0, fmt.Sprintf("filter %q", f)
			}
			arg = arg[:len(arg)-1]
		}
		switch name {
		case "float", "int":
			if hasArg && arg != "" {
				if _, err := strconv.ParseFloat(arg, 64); err != nil {
					return "", "", 0, fmt.Sprintf("filter %q: default is not a number", f)
				}
			}
			filter = name
		case "round":
			n, err := strconv.Atoi(arg)
			if !hasArg || arg == "" {
				n, err = 0, nil
			}
			if err != nil || n < 0 || n > 15 {
				return "", "", 0, fmt.Sprintf("filter %q: want round(0..15)", f)
			}
			filter, digits = "round", n
		default:
			return "", "", 0, fmt.Sprintf("filter %q is not supported", name)
		}
	}
	return path, filter, digits, ""
}

// isIdent reports whether a value_json key holds only printable characters
// other than quotes and brackets.
func isIdent(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == '\'' || c == '"' || c == '[' || c == ']' || c == ' ' || c == '|' || c == '(' || c == ')' {
			return false
		}
	}
	return true
}
