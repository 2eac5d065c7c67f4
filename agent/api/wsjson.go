package api

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/edgeagent/edgeagent/agent"
)

// encodeReading returns r as the live stream sends it: the bytes
// json.Marshal gives for Message{Type: "reading", Reading: ...}, written by
// hand because the hub encodes every reading a viewer is sent and
// json.Marshal's reflection was most of that cost. It returns nil for a
// non-finite value, which json.Marshal refuses and a viewer cannot plot.
func encodeReading(r *agent.Result) []byte {
	band := r.Band != (agent.Band{}) && !math.IsInf(r.Band.Lo, 0) && !math.IsInf(r.Band.Hi, 0)
	if !finite(r.Value) || !finite(r.Raw) || !finite(r.Score) || band && (!finite(r.Band.Lo) || !finite(r.Band.Hi)) {
		return nil
	}
	b := make([]byte, 0, 256) // 190 bytes for a typical reading with a band
	b = append(b, `{"type":"reading","reading":{"sensor":`...)
	b = appendJSONString(b, r.Sensor)
	if r.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, r.Kind)
	}
	if r.Unit != "" {
		b = append(b, `,"unit":`...)
		b = appendJSONString(b, r.Unit)
	}
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, r.Time.UnixMilli(), 10)
	b = append(b, `,"v":`...)
	b = appendJSONFloat(b, r.Value)
	b = append(b, `,"raw":`...)
	b = appendJSONFloat(b, r.Raw)
	b = append(b, `,"score":`...)
	b = appendJSONFloat(b, r.Score)
	if r.Detector != "" {
		b = append(b, `,"detector":`...)
		b = appendJSONString(b, r.Detector)
	}
	if band {
		b = append(b, `,"band":[`...)
		b = appendJSONFloat(b, r.Band.Lo)
		b = append(b, ',')
		b = appendJSONFloat(b, r.Band.Hi)
		b = append(b, ']')
	}
	if r.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(r.Flags), 10)
	}
	return append(b, "}}"...)
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// appendJSONFloat appends f as encoding/json writes a float64.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString appends s quoted as encoding/json quotes it. Strings
// with nothing to escape (sensor ids, units such as °C) are copied; any
// other goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return appendJSONQuoted(b, s)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return appendJSONQuoted(b, s)
		}
		i += size
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONQuoted(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}
