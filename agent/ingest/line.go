package ingest

import (
	"fmt"
	"math"
	"strconv"

	"github.com/edgeagent/edgeagent/agent"
)

// line.go: InfluxDB line protocol (Telegraf's data_format = "influx"):
//
//	measurement[,tag=value...] field=value[,field=value...] [timestamp]
//
// One reading per numeric or boolean field: sensor id
// {base id}/measurement/{id tag values}/field (the base id from the topic's
// captures, see Topic.ID, left out when empty), kind = the field key, no unit. Floats
// ("21.4", "1e3"), integers ("12i"), unsigned ("12u") and booleans (t, T,
// true, True, TRUE and the f forms, as 1/0) are values; string fields are
// skipped. The timestamp is an integer in the topic's TimeFormat (unix_ns by
// default, as Telegraf's influx_timestamp_precision = "1ns"). Lines are
// separated by '\n'; empty lines and '#' comments are skipped. A bad line is
// rejected as an item (Error.Index = the line's index) with bad_line_protocol.

// maxTags bounds the tags of a line.
const maxTags = 32

type lpTag struct{ k, v []byte } // escaped forms

// line decodes a line protocol payload.
func (d *Decoder) line(m *message, out []agent.Reading) ([]agent.Reading, error) {
	var errs Errors
	b := m.payload
	found := false
	for idx, start := 0, 0; start < len(b); idx++ {
		end := start
		for end < len(b) && b[end] != '\n' {
			end++
		}
		l := b[start:end]
		start = end + 1
		for len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
			l = l[1:]
		}
		for len(l) > 0 && (l[len(l)-1] == '\r' || l[len(l)-1] == ' ') {
			l = l[:len(l)-1]
		}
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		found = true
		var e *Error
		out, e = d.lpLine(m, l, idx, out)
		if e != nil {
			errs = append(errs, e)
		}
	}
	if !found {
		return out, &Error{Reason: ReasonMissingValue, Topic: m.topic, Index: -1, Err: fmt.Errorf("no line")}
	}
	switch len(errs) {
	case 0:
		return out, nil
	case 1:
		return out, errs[0]
	}
	return out, errs
}

// lpToken returns the escaped token of l from i up to an unescaped byte of
// stops, and the index of that byte (len(l) when none).
func lpToken(l []byte, i int, stops string) ([]byte, int) {
	s := i
	for i < len(l) {
		c := l[i]
		if c == '\\' && i+1 < len(l) {
			i += 2
			continue
		}
		for k := 0; k < len(stops); k++ {
			if c == stops[k] {
				return l[s:i], i
			}
		}
		i++
	}
	return l[s:], i
}

// lpUnescape appends tok without its backslash escapes (\, \= \space \" \\).
func lpUnescape(buf, tok []byte) []byte {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c == '\\' && i+1 < len(tok) {
			switch tok[i+1] {
			case ',', '=', ' ', '"', '\\':
				i++
				c = tok[i]
			}
		}
		buf = append(buf, c)
	}
	return buf
}

func (d *Decoder) lpLine(m *message, l []byte, idx int, out []agent.Reading) ([]agent.Reading, *Error) {
	base := len(out)
	bad := func(format string, args ...any) ([]agent.Reading, *Error) {
		clear(out[base:])
		return out[:base], &Error{Reason: ReasonBadLine, Topic: m.topic, Index: idx, Err: fmt.Errorf(format, args...)}
	}
	meas, i := lpToken(l, 0, ", ")
	if len(meas) == 0 {
		return bad("no measurement")
	}
	var tags [maxTags]lpTag
	nt := 0
	for i < len(l) && l[i] == ',' {
		k, j := lpToken(l, i+1, "=, ")
		if j >= len(l) || l[j] != '=' || len(k) == 0 {
			return bad("tag without key=value at column %d", i+1)
		}
		v, j2 := lpToken(l, j+1, ", ")
		if len(v) == 0 {
			return bad("tag %q without a value", excerpt(k))
		}
		if nt == maxTags {
			return bad("more than %d tags", maxTags)
		}
		tags[nt] = lpTag{k, v}
		nt++
		i = j2
	}
	if i >= len(l) || l[i] != ' ' {
		return bad("no fields")
	}
	for i < len(l) && l[i] == ' ' {
		i++
	}
	// The id prefix: measurement and id tag values.
	var idbuf [512]byte
	id := m.t.baseID(m, idbuf[:0])
	if len(id) > 0 {
		id = append(id, '/')
	}
	id = lpUnescape(id, meas)
	if len(m.t.idTags) > 0 {
		for _, want := range m.t.idTags {
			for _, tg := range tags[:nt] {
				if lpEqual(tg.k, want) {
					id = lpUnescape(append(id, '/'), tg.v)
				}
			}
		}
	} else {
		for _, tg := range tags[:nt] {
			id = lpUnescape(append(id, '/'), tg.v)
		}
	}
	prefix := len(id)
	// Fields.
	type field struct {
		key []byte
		v   float64
	}
	var fields [64]field
	nf := 0
	for {
		k, j := lpToken(l, i, "=, ")
		if len(k) == 0 || j >= len(l) || l[j] != '=' {
			return bad("field without key=value at column %d", i+1)
		}
		i = j + 1
		if i < len(l) && l[i] == '"' { // a string field: skipped
			i++
			for i < len(l) && l[i] != '"' {
				if l[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(l) {
				return bad("unterminated string field %q", excerpt(k))
			}
			i++
		} else {
			v, j := lpToken(l, i, ", ")
			f, ok := lpValue(v)
			if !ok {
				return bad("field %q: %q is not a number or boolean", excerpt(k), excerpt(v))
			}
			if nf < len(fields) {
				fields[nf] = field{k, f}
				nf++
			}
			i = j
		}
		if i < len(l) && l[i] == ',' {
			i++
			continue
		}
		break
	}
	ts, hasTime := m.arrived, false
	var flags agent.Flags
	if i < len(l) {
		if l[i] != ' ' {
			return bad("junk after fields at column %d", i+1)
		}
		for i < len(l) && l[i] == ' ' {
			i++
		}
		raw := l[i:]
		if len(raw) > 0 {
			for k, c := range raw {
				if !(c >= '0' && c <= '9' || k == 0 && c == '-') {
					return bad("timestamp %q is not an integer", excerpt(raw))
				}
			}
			t, p := epochTime(raw, m.t.timeFormat)
			if p == nil {
				t, flags, p = d.stamp(m, t)
			}
			if p != nil {
				clear(out[base:])
				return out[:base], &Error{Reason: p.reason, Topic: m.topic, Field: "timestamp", Index: idx, Err: p.err}
			}
			ts, hasTime = t, true
		}
	}
	_ = hasTime
	for _, f := range fields[:nf] {
		id = lpUnescape(append(id[:prefix], '/'), f.key)
		kind := id[prefix+1:]
		r := agent.Reading{Sensor: string(id), Kind: string(kind), Value: f.v, Time: ts, Arrived: m.arrived, Flags: flags}
		if p := checkID(r.Sensor, d.maxIDLen); p != nil {
			clear(out[base:])
			return out[:base], &Error{Reason: p.reason, Topic: m.topic, Index: idx, Err: p.err}
		}
		out = append(out, r)
	}
	if nf == 0 {
		return out, &Error{Reason: ReasonNoValues, Topic: m.topic, Index: idx, Err: fmt.Errorf("no numeric field")}
	}
	return out, nil
}

// lpEqual reports whether the escaped tag key k is s.
func lpEqual(k []byte, s string) bool {
	if !hasEscape(k) {
		return string(k) == s
	}
	var buf [128]byte
	return string(lpUnescape(buf[:0], k)) == s
}

// lpValue parses a field value: float, 12i, 12u, or a boolean.
func lpValue(v []byte) (float64, bool) {
	switch string(v) {
	case "t", "T", "true", "True", "TRUE":
		return 1, true
	case "f", "F", "false", "False", "FALSE":
		return 0, true
	}
	if len(v) == 0 {
		return 0, false
	}
	switch v[len(v)-1] {
	case 'i':
		n, err := strconv.ParseInt(string(v[:len(v)-1]), 10, 64)
		return float64(n), err == nil
	case 'u':
		n, err := strconv.ParseUint(string(v[:len(v)-1]), 10, 64)
		return float64(n), err == nil
	}
	if !isDecimal(v) || v[0] == '+' || v[0] == '.' {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}
