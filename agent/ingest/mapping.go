package ingest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// mapping.go: the generic JSON mapping. One JSON document yields many
// readings: either the leaves a Values list names, or every numeric leaf
// (Flatten). Each reading's sensor id is the topic's base id (see Topic.ID)
// joined with the leaf's path: "ds1820" + "DS18B20.Temperature" gives
// "ds1820/DS18B20/Temperature".

// Value names one JSON leaf that yields a reading in mapping mode.
type Value struct {
	Path string // "DS18B20.Temperature"; the sensor id is {base id}/DS18B20/Temperature
	Kind string // "" means the last path segment (lower-cased when Topic.LowerKind)
	Unit string // "" means Topic.Units[last segment], else none
}

// Flatten turns every numeric or boolean leaf of a JSON object into a reading.
// Strings, nulls and objects deeper than Depth are skipped, not rejected;
// arrays of numbers give one reading per element ("Power/0", "Power/1").
type Flatten struct {
	// Depth is how many object levels below Root are walked. Zero means 2.
	Depth int
	// Root is the JSON path of the object to walk; "" means the whole payload.
	Root string
	// Include, when not empty, keeps only leaves it names; Exclude drops the
	// leaves it names. An entry without a dot names a key at any depth
	// ("linkquality"); with dots it names a path from Root ("ENERGY.Total")
	// or the end of one ("aenergy.total" names "switch:0.aenergy.total").
	// The Time path is always excluded.
	Include, Exclude []string
}

// The kind of a liveness reading (see FormatLiveness).
const KindLiveness = "liveness"

// mapping is the compiled Values or Flatten of a topic.
type mapping struct {
	values []valueSpec
	flat   bool
	depth  int
	root   []string
	incl   matchSet
	excl   matchSet
	units  map[string]string // leaf key → unit, or "@N" for the N-th unit field
	kinds  map[string]string // leaf key → kind
	lower  bool
}

type valueSpec struct {
	segs       []string
	path, kind string
	unit       string
}

// matchSet holds the keys and dotted paths of Include or Exclude.
type matchSet struct {
	keys  map[string]bool
	paths map[string]bool
}

func newMatchSet(entries []string) matchSet {
	m := matchSet{keys: map[string]bool{}, paths: map[string]bool{}}
	for _, e := range entries {
		if strings.Contains(e, ".") {
			m.paths[e] = true
		} else {
			m.keys[e] = true
		}
	}
	return m
}

func (m *matchSet) empty() bool { return len(m.keys) == 0 && len(m.paths) == 0 }

// has reports whether the leaf at segs (keys as raw JSON string contents,
// unescaped) is named by m.
func (m *matchSet) has(segs [][]byte) bool {
	if len(m.keys) > 0 && m.keys[string(segs[len(segs)-1])] {
		return true
	}
	if len(m.paths) > 0 {
		var buf [256]byte
		p := buf[:0]
		for i, s := range segs {
			if i > 0 {
				p = append(p, '.')
			}
			p = append(p, s...)
		}
		if m.paths[string(p)] {
			return true
		}
		for i := 1; i < len(p); i++ { // a suffix after a '.'
			if p[i-1] == '.' && m.paths[string(p[i:])] {
				return true
			}
		}
	}
	return false
}

// compileMapping checks the mapping settings of tc.
func compileMapping(key string, tc *Topic) (*mapping, error) {
	mp := &mapping{units: tc.Units, kinds: tc.Kinds, lower: tc.LowerKind}
	if len(tc.Values) > 0 && tc.Flatten != nil {
		return nil, fmt.Errorf("%s: values and flatten are exclusive", key)
	}
	for j, v := range tc.Values {
		vkey := fmt.Sprintf("%s.values[%d]", key, j)
		segs, err := splitPath(v.Path)
		if err != nil {
			return nil, fmt.Errorf("%s.path: %w", vkey, err)
		}
		if v.Kind != "" {
			if p := checkID(v.Kind, 128); p != nil {
				return nil, fmt.Errorf("%s.kind: %w", vkey, p.err)
			}
		}
		if !validUnit(v.Unit) {
			return nil, fmt.Errorf("%s.unit: %q must be at most %d bytes without control characters", vkey, v.Unit, maxUnitLen)
		}
		mp.values = append(mp.values, valueSpec{segs: segs, path: v.Path, kind: v.Kind, unit: v.Unit})
	}
	if f := tc.Flatten; f != nil {
		mp.flat = true
		mp.depth = f.Depth
		if mp.depth == 0 {
			mp.depth = 2
		}
		if mp.depth < 0 || mp.depth >= maxDepth-1 {
			return nil, fmt.Errorf("%s.flatten.depth: %d must be between 1 and %d", key, f.Depth, maxDepth-2)
		}
		if f.Root != "" {
			segs, err := splitPath(f.Root)
			if err != nil {
				return nil, fmt.Errorf("%s.flatten.root: %w", key, err)
			}
			mp.root = segs
		}
		for _, l := range []struct {
			name string
			list []string
		}{{"include", f.Include}, {"exclude", f.Exclude}} {
			for j, e := range l.list {
				if _, err := splitPath(e); err != nil {
					return nil, fmt.Errorf("%s.flatten.%s[%d]: %w", key, l.name, j, err)
				}
			}
		}
		mp.incl, mp.excl = newMatchSet(f.Include), newMatchSet(f.Exclude)
		if tc.Time != "" {
			rel := tc.Time
			if f.Root != "" {
				rel = strings.TrimPrefix(tc.Time, f.Root+".")
			}
			mp.excl.paths[rel] = true
			if !strings.Contains(rel, ".") {
				mp.excl.keys[rel] = true
			}
		}
	}
	return mp, nil
}

func splitPath(p string) ([]string, error) {
	if p == "" {
		return nil, fmt.Errorf("must not be empty")
	}
	segs := strings.Split(p, ".")
	for _, s := range segs {
		if s == "" {
			return nil, fmt.Errorf("%q has an empty path segment", p)
		}
	}
	if len(segs) >= maxDepth-1 {
		return nil, fmt.Errorf("%q is nested deeper than %d", p, maxDepth-2)
	}
	return segs, nil
}

func validUnit(u string) bool {
	return len(u) <= maxUnitLen && checkID(u+"u", maxUnitLen+1) == nil
}

// walker visits the leaves of a mapped JSON document and appends readings.
type walker struct {
	d     *Decoder
	m     message // a copy: the walk is recursive, so the walker escapes
	mp    *mapping
	base  []byte // the base sensor id (a reused buffer)
	time  time.Time
	flags agent.Flags
	uf    [2]string // values of the unit fields
	segs  [maxDepth][]byte
	num   [maxDepth][2]byte // array index segments
	out   []agent.Reading
	errs  Errors
	found int // leaves that yielded a reading or a rejection
}

// mapped decodes a JSON object with the topic's mapping.
func (d *Decoder) mapped(m *message, out []agent.Reading) ([]agent.Reading, error) {
	t := m.t
	s := scanner{b: m.payload}
	s.ws()
	if s.peek() != '{' {
		if s.i == len(s.b) {
			return out, &Error{Reason: ReasonMissingValue, Topic: m.topic, Index: -1, Err: fmt.Errorf("empty payload")}
		}
		_, ok := s.value(0)
		if ok && !s.end() {
			ok = s.fail("data after the JSON value")
		}
		if ok {
			return out, &Error{Reason: ReasonNotNumeric, Topic: m.topic, Index: -1, Err: fmt.Errorf("payload is not a JSON object")}
		}
		return out, &Error{Reason: ReasonBadJSON, Topic: m.topic, Index: -1, Err: s.err}
	}
	// Pass 1: validate the document and find the time, root and unit fields.
	var sp [nFields]span
	ok := s.object(0, &t.paths, 0, t.paths.active, &sp)
	if ok && !s.end() {
		ok = s.fail("data after the JSON value")
	}
	if !ok {
		return out, &Error{Reason: ReasonBadJSON, Topic: m.topic, Index: -1, Err: s.err}
	}
	w, _ := d.walkers.Get().(*walker)
	if w == nil {
		w = new(walker)
	}
	defer func() {
		clear(w.segs[:])
		*w = walker{base: w.base[:0], segs: w.segs}
		d.walkers.Put(w)
	}()
	w.d, w.m, w.mp, w.out = d, *m, t.mapping, out
	w.base = t.baseID(m, w.base[:0])
	ts, tok, p := jsonTime(m.payload, sp[fTime], t.timeFormat, d.loc)
	if p == nil && tok {
		ts, w.flags, p = d.stamp(m, ts)
	}
	if p != nil {
		return out, &Error{Reason: p.reason, Topic: m.topic, Field: t.fields[fTime], Index: -1, Err: p.err}
	}
	w.time = m.arrived
	if tok {
		w.time = ts
	}
	for k, f := range [2]int{fUnit1, fUnit2} {
		if u := sp[f]; u.typ == '"' {
			w.uf[k] = unitWord(m.payload[u.s+1 : u.e-1])
		}
	}
	root := span{s: 0, e: len(m.payload), typ: '{'}
	if len(t.mapping.root) > 0 {
		root = sp[fRoot]
		if root.typ != '{' {
			return out, &Error{Reason: ReasonNoValues, Topic: m.topic, Field: t.fields[fRoot], Index: -1, Err: fmt.Errorf("no object at the root path")}
		}
	}
	// Pass 2: walk the (already validated) object at root.
	ws := scanner{b: m.payload[:root.e], i: root.s}
	ws.ws()
	w.object(&ws, 0)
	res, errs := w.out, w.errs
	if len(res) == len(out) && len(errs) == 0 {
		return res, &Error{Reason: ReasonNoValues, Topic: m.topic, Index: -1, Err: fmt.Errorf("no numeric value to map")}
	}
	if len(errs) > 0 {
		if len(res) == len(out) && len(errs) == 1 {
			return res, errs[0]
		}
		return res, errs
	}
	return res, nil
}

// object walks the object at s.i whose path so far is w.segs[:n].
func (w *walker) object(s *scanner, n int) {
	s.i++ // '{'
	s.ws()
	if s.peek() == '}' {
		s.i++
		return
	}
	for {
		ks := s.i
		if !s.str() {
			return
		}
		w.segs[n] = keyBytes(s.b[ks:s.i])
		s.ws()
		s.i++ // ':'
		s.ws()
		c := s.peek()
		switch {
		case c == '{' && w.descend(n+1):
			w.object(s, n+1)
		case c == '[' && w.mp.flat && n+1 <= w.mp.depth:
			w.array(s, n+1)
		default:
			vs, ok := s.value(n + 1)
			if !ok {
				return
			}
			w.leaf(w.segs[:n+1], vs, -1)
		}
		s.ws()
		if s.peek() != ',' {
			s.i++ // '}'
			return
		}
		s.i++
		s.ws()
	}
}

// descend reports whether the walk enters an object at path depth n.
func (w *walker) descend(n int) bool {
	if w.mp.flat {
		return n < w.mp.depth
	}
	for i := range w.mp.values {
		v := &w.mp.values[i]
		if len(v.segs) > n && prefixEq(v.segs[:n], w.segs[:n]) {
			return true
		}
	}
	return false
}

// maxElems bounds the array elements of one leaf that yield readings.
const maxElems = 16

// array walks an array of numbers at path w.segs[:n-1]; element i has the
// path segment "i". Other elements and elements past 16 are skipped.
func (w *walker) array(s *scanner, n int) {
	s.i++ // '['
	s.ws()
	if s.peek() == ']' {
		s.i++
		return
	}
	for idx := 0; ; idx++ {
		vs, ok := s.value(n + 1)
		if !ok {
			return
		}
		if idx < maxElems && (vs.typ == 'n' || vs.typ == 't' || vs.typ == 'f') {
			w.segs[n] = strconv.AppendInt(w.num[n][:0], int64(idx), 10)
			w.leaf(w.segs[:n+1], vs, idx)
		}
		s.ws()
		if s.peek() != ',' {
			s.i++ // ']'
			return
		}
		s.i++
		s.ws()
	}
}

// leaf turns one leaf into a reading when the mapping selects it.
func (w *walker) leaf(segs [][]byte, vs span, elem int) {
	mp := w.mp
	key := segs[len(segs)-1]
	if elem >= 0 {
		key = segs[len(segs)-2]
	}
	kind, unit, field := "", "", ""
	if mp.flat {
		switch vs.typ {
		case 'n', 't', 'f':
		default:
			return // strings, nulls, objects too deep: not a quantity
		}
		if !mp.excl.empty() && (mp.excl.has(segs) || elem >= 0 && mp.excl.has(segs[:len(segs)-1])) {
			return
		}
		if !mp.incl.empty() && !mp.incl.has(segs) && !(elem >= 0 && mp.incl.has(segs[:len(segs)-1])) {
			return
		}
	} else {
		var spec *valueSpec
		for i := range mp.values {
			if v := &mp.values[i]; len(v.segs) == len(segs) && prefixEq(v.segs, segs) {
				spec = v
			}
		}
		if spec == nil {
			return
		}
		kind, unit, field = spec.kind, spec.unit, spec.path
	}
	w.found++
	if kind == "" {
		kind = w.kindOf(key)
	}
	if unit == "" && mp.units != nil {
		unit = mp.units[string(key)]
		if len(unit) == 2 && unit[0] == '@' {
			unit = w.uf[unit[1]-'1']
		}
	}
	v, p := jsonValue(w.m.payload, vs)
	if p != nil {
		w.bad(p, field, segs)
		return
	}
	var buf [512]byte
	id := append(buf[:0], w.base...)
	for _, s := range segs {
		if len(id) > 0 {
			id = append(id, '/')
		}
		id = append(id, s...)
	}
	if len(id) > w.d.maxIDLen {
		w.bad(fail(ReasonBadSensorID, "id of %d bytes is longer than %d", len(id), w.d.maxIDLen), field, segs)
		return
	}
	r := agent.Reading{Sensor: string(id), Kind: kind, Unit: unit, Value: v, Time: w.time, Arrived: w.m.arrived, Flags: w.flags}
	if p := checkID(r.Sensor, w.d.maxIDLen); p != nil {
		w.bad(p, field, segs)
		return
	}
	if p := checkID(r.Kind, w.d.maxIDLen); p != nil {
		w.bad(p, field, segs)
		return
	}
	w.out = append(w.out, r)
}

// bad records the rejection of a leaf.
func (w *walker) bad(p *problem, field string, segs [][]byte) {
	if field == "" {
		field = joinPath(segs)
	}
	w.errs = append(w.errs, &Error{Reason: p.reason, Topic: w.m.topic, Field: field, Index: -1, Err: p.err})
}

// kindOf returns the kind of a leaf key: the topic's kind table, else the key
// (lower-cased when the topic says so).
func (w *walker) kindOf(key []byte) string {
	if k, ok := w.mp.kinds[string(key)]; ok {
		return k
	}
	if w.mp.lower {
		return strings.ToLower(string(key))
	}
	return string(key)
}

func joinPath(segs [][]byte) string {
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('.')
		}
		b.Write(s)
	}
	return b.String()
}

func prefixEq(want []string, got [][]byte) bool {
	for i, s := range want {
		if string(got[i]) != s {
			return false
		}
	}
	return true
}

// keyBytes returns the content of a quoted JSON key; escaped keys are
// unescaped (allocating), so they compare as their text.
func keyBytes(quoted []byte) []byte {
	raw := quoted[1 : len(quoted)-1]
	if !hasEscape(raw) {
		return raw
	}
	s, _ := unquote(quoted)
	return []byte(s)
}

// unitWord normalises a unit named by a payload field: Tasmota's TempUnit
// "C" and "F" are °C and °F. Bad units give "".
func unitWord(u []byte) string {
	switch string(u) {
	case "C":
		return "°C"
	case "F":
		return "°F"
	case "K":
		return "K"
	}
	s, ok := unitString(u)
	if !ok {
		return ""
	}
	return s
}

// stamp checks a payload time against MinTime and MaxSkew: a time before
// MinTime becomes the arrival time with agent.FlagRestamped.
func (d *Decoder) stamp(m *message, ts time.Time) (time.Time, agent.Flags, *problem) {
	switch {
	case ts.Before(d.minTime):
		return m.arrived, agent.FlagRestamped, nil
	case ts.After(m.arrived.Add(d.maxSkew)):
		return time.Time{}, 0, fail(ReasonFutureTimestamp, "%s is %v after arrival (max_skew %v)",
			ts.UTC().Format(time.RFC3339Nano), ts.Sub(m.arrived).Round(time.Millisecond), d.maxSkew)
	}
	return ts, 0, nil
}

// idPart is one level of an id template: a literal or a capture.
type idPart struct {
	lit     string
	capture int // -1 for a literal
}

// compileID parses an id template ("{device}/ext_temperature/{n}").
func compileID(id string, tmpl *template) ([]idPart, error) {
	var parts []idPart
	for _, s := range strings.Split(id, "/") {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			c := tmpl.index(s[1 : len(s)-1])
			if c < 0 {
				return nil, fmt.Errorf("%q: the pattern has no placeholder %s", id, s)
			}
			parts = append(parts, idPart{capture: c})
			continue
		}
		if s == "" || strings.ContainsAny(s, "{}+#") {
			return nil, fmt.Errorf("%q: level %q is neither a literal nor a {placeholder}", id, s)
		}
		parts = append(parts, idPart{lit: s, capture: -1})
	}
	return parts, nil
}

// baseID appends the topic's base sensor id to buf: the id template with
// empty captures (and their '/') left out.
func (t *topic) baseID(m *message, buf []byte) []byte {
	for _, p := range t.id {
		s := p.lit
		if p.capture >= 0 {
			s = m.caps[p.capture]
		}
		if s == "" {
			continue
		}
		if len(buf) > 0 {
			buf = append(buf, '/')
		}
		buf = append(buf, s...)
	}
	return buf
}
