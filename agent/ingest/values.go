package ingest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// values.go: turning scanned bytes into a value, a time, an id.

// problem is a rejection without its location (topic, field, item), which
// the caller adds.
type problem struct {
	reason Reason
	err    error
}

func fail(r Reason, format string, args ...any) *problem {
	return &problem{reason: r, err: fmt.Errorf(format, args...)}
}

// jsonValue converts the value at sp: a number, a numeric string, a boolean
// (1 or 0). null and an absent field are missing_value.
func jsonValue(b []byte, sp span) (float64, *problem) {
	switch sp.typ {
	case 0:
		return 0, fail(ReasonMissingValue, "missing")
	case 'z':
		return 0, fail(ReasonMissingValue, "is null")
	case 't':
		return 1, nil
	case 'f':
		return 0, nil
	case 'n':
		return parseFloat(b[sp.s:sp.e])
	case '"':
		raw := b[sp.s+1 : sp.e-1]
		if hasEscape(raw) {
			return 0, fail(ReasonNotNumeric, "%q is not a number", excerpt(b[sp.s:sp.e]))
		}
		return decimal(raw)
	case '{':
		return 0, fail(ReasonNotNumeric, "an object is not a number")
	default:
		return 0, fail(ReasonNotNumeric, "an array is not a number")
	}
}

// decimal parses text that should hold a number, as a bare payload or a
// JSON string: optional sign, digits with an optional fraction and exponent.
// Words that devices send for "no value" are missing_value; NaN and
// infinities are not_finite.
func decimal(b []byte) (float64, *problem) {
	if !isDecimal(b) {
		switch strings.ToLower(string(b)) {
		case "", "none", "null", "nil", "unavailable", "unknown", "n/a", "-":
			return 0, fail(ReasonMissingValue, "%q is no value", excerpt(b))
		case "nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity":
			return 0, fail(ReasonNotFinite, "%q is not finite", excerpt(b))
		}
		return 0, fail(ReasonNotNumeric, "%q is not a number", excerpt(b))
	}
	return parseFloat(b)
}

// parseFloat parses text already known to be decimal.
func parseFloat(b []byte) (float64, *problem) {
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fail(ReasonNotNumeric, "%q is not a number", excerpt(b))
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fail(ReasonNotFinite, "%q is not finite as a float64", excerpt(b))
	}
	return v, nil
}

// isDecimal reports whether b is [+-]?(d+(.d*)?|.d+)([eE][+-]?d+)?
func isDecimal(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	n := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			n++
		}
	}
	if n == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		e := 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			e++
		}
		if e == 0 {
			return false
		}
	}
	return i == len(b)
}

// trimSpace trims ASCII white space, as MQTT payloads often end in "\n".
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// TimeFormat says how a payload timestamp is read.
type TimeFormat string

// The time formats a Topic may name.
const (
	// TimeAuto reads an RFC 3339 string, or a number (or numeric string) of
	// seconds, milliseconds, microseconds or nanoseconds since the epoch,
	// chosen by magnitude: |n| < 1e11 is seconds (until the year 5138),
	// < 1e14 milliseconds (from 1973-03-03), < 1e17 microseconds, else
	// nanoseconds.
	TimeAuto    TimeFormat = "auto"
	TimeUnixS   TimeFormat = "unix_s"
	TimeUnixMs  TimeFormat = "unix_ms"
	TimeUnixUs  TimeFormat = "unix_us"
	TimeUnixNs  TimeFormat = "unix_ns"
	TimeRFC3339 TimeFormat = "rfc3339" // "2024-11-28T13:20:00Z", "…+01:00", fraction optional
	// TimeLocal reads "2021-01-13T23:58:41" (fraction optional) in
	// Options.Location: Tasmota's Time without an offset. A string with an
	// offset or Z is read as RFC 3339.
	TimeLocal TimeFormat = "local"
)

// TimeFormats lists every TimeFormat; "" means TimeAuto.
func TimeFormats() []TimeFormat {
	return []TimeFormat{TimeAuto, TimeUnixS, TimeUnixMs, TimeUnixUs, TimeUnixNs, TimeRFC3339, TimeLocal}
}

// The range of times a payload may carry: years 1 to 9999.
const (
	minUnix = -62135596800
	maxUnix = 253402300799
)

// jsonTime converts the timestamp at sp; ok is false when the field is absent
// or null (the reading then takes its arrival time).
func jsonTime(b []byte, sp span, f TimeFormat, loc *time.Location) (t time.Time, ok bool, p *problem) {
	switch sp.typ {
	case 0, 'z':
		return time.Time{}, false, nil
	case 'n':
		if f == TimeRFC3339 || f == TimeLocal {
			return time.Time{}, false, fail(ReasonBadTimestamp, "%s is a number, not an RFC 3339 time", excerpt(b[sp.s:sp.e]))
		}
		t, p = epochTime(b[sp.s:sp.e], f)
		return t, p == nil, p
	case '"':
		raw := b[sp.s+1 : sp.e-1]
		if f == TimeLocal {
			return localTime(raw, loc)
		}
		if f != TimeRFC3339 && isDecimal(raw) {
			t, p = epochTime(raw, f)
			return t, p == nil, p
		}
		if f != TimeAuto && f != TimeRFC3339 {
			return time.Time{}, false, fail(ReasonBadTimestamp, "%q is not a number of %s", excerpt(raw), f)
		}
		s := string(raw)
		if hasEscape(raw) {
			s, _ = unquote(b[sp.s:sp.e])
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, false, fail(ReasonBadTimestamp, "%q is not an RFC 3339 time or a number", excerpt(raw))
		}
		return t, true, nil
	default:
		return time.Time{}, false, fail(ReasonBadTimestamp, "%s is not a time", excerpt(b[sp.s:sp.e]))
	}
}

// localTime reads a wall-clock time without offset in loc; with an offset or
// Z it is RFC 3339.
func localTime(raw []byte, loc *time.Location) (time.Time, bool, *problem) {
	if hasEscape(raw) || len(raw) < 19 {
		return time.Time{}, false, fail(ReasonBadTimestamp, "%q is not a local time", excerpt(raw))
	}
	s := string(raw)
	if c := s[len(s)-1]; c == 'Z' || c == 'z' || len(s) > 19 && strings.ContainsAny(s[19:], "+-") {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, false, fail(ReasonBadTimestamp, "%q is not an RFC 3339 time", excerpt(raw))
		}
		return t, true, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, loc)
	if err != nil {
		return time.Time{}, false, fail(ReasonBadTimestamp, "%q is not a local time like 2021-01-13T23:58:41", excerpt(raw))
	}
	return t, true, nil
}

// epochTime reads a decimal number of seconds, ms, µs or ns since the epoch.
func epochTime(b []byte, f TimeFormat) (time.Time, *problem) {
	// Integers convert exactly (float64 cannot hold every ns since 1970).
	n, ierr := strconv.ParseInt(string(b), 10, 64)
	v := float64(n)
	if ierr != nil {
		var err error
		v, err = strconv.ParseFloat(string(b), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return time.Time{}, fail(ReasonBadTimestamp, "%q is not a number", excerpt(b))
		}
	}
	exp := 0 // the timestamp is v·10^-exp seconds
	switch f {
	case TimeUnixMs:
		exp = 3
	case TimeUnixUs:
		exp = 6
	case TimeUnixNs:
		exp = 9
	case TimeUnixS:
	default:
		switch a := math.Abs(v); {
		case a < 1e11:
		case a < 1e14:
			exp = 3
		case a < 1e17:
			exp = 6
		default:
			exp = 9
		}
	}
	sec := v / math.Pow10(exp)
	if !(sec >= minUnix && sec <= maxUnix) {
		return time.Time{}, fail(ReasonBadTimestamp, "%q is out of range", excerpt(b))
	}
	if ierr == nil {
		switch exp {
		case 0:
			return time.Unix(n, 0), nil
		case 3:
			return time.UnixMilli(n), nil
		case 6:
			return time.UnixMicro(n), nil
		default:
			return time.Unix(0, n), nil
		}
	}
	whole := math.Floor(sec)
	return time.Unix(int64(whole), int64(math.Round((sec-whole)*1e9))), nil
}

// unquote decodes a JSON string the scanner has validated. Lone surrogates
// become U+FFFD, as in encoding/json.
func unquote(q []byte) (string, bool) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", false
	}
	b := q[1 : len(q)-1]
	if !hasEscape(b) {
		return string(b), true
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return "", false
		}
		switch b[i+1] {
		case '"', '\\', '/':
			out = append(out, b[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b[i+2:])
			if !ok {
				return "", false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if len(b) >= i+6 && b[i] == '\\' && b[i+1] == 'u' {
					if r2, ok := hex4(b[i+2:]); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							out = utf8.AppendRune(out, d)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", false
		}
		i += 2
	}
	return string(out), true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// checkID rejects ids that are empty, longer than max bytes, not UTF-8, or
// hold control characters.
func checkID(id string, max int) *problem {
	if id == "" {
		return fail(ReasonBadSensorID, "empty id")
	}
	if len(id) > max {
		return fail(ReasonBadSensorID, "id of %d bytes is longer than %d", len(id), max)
	}
	for i := 0; i < len(id); {
		c := id[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fail(ReasonBadSensorID, "id %q has a control character", excerpt([]byte(id)))
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && n <= 1 {
			return fail(ReasonBadSensorID, "id %q is not valid UTF-8", excerpt([]byte(id)))
		}
		if r >= 0x80 && r < 0xa0 { // C1 controls
			return fail(ReasonBadSensorID, "id %q has a control character", excerpt([]byte(id)))
		}
		i += n
	}
	return nil
}
