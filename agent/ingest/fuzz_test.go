package ingest

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edgeagent/edgeagent/agent"
)

// checkDecode decodes payload on topic and checks what every result must
// satisfy, whatever the input: no panic, finite values, valid ids, times in
// range, rejections with a listed reason, out's prefix untouched.
func checkDecode(t *testing.T, d *Decoder, topic string, payload []byte) ([]agent.Reading, error) {
	t.Helper()
	prefix := []agent.Reading{{Sensor: "earlier"}}
	out, err := d.Decode(topic, payload, arrived, prefix)
	if len(out) == 0 || out[0].Sensor != "earlier" {
		t.Fatalf("Decode(%q, %q) lost the prefix of out", topic, payload)
	}
	out = out[1:]
	if errors.Is(err, ErrNoMatch) {
		t.Fatalf("Decode(%q) = ErrNoMatch on a matching topic", topic)
	}
	checkResults(t, d, topic, payload, out, err)
	return out, err
}

// checkResults checks what every result of Decode must satisfy.
func checkResults(t *testing.T, d *Decoder, topic string, payload []byte, out []agent.Reading, err error) {
	t.Helper()
	for _, r := range out {
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
			t.Fatalf("Decode(%q) = value %v", payload, r.Value)
		}
		if checkID(r.Sensor, d.maxIDLen) != nil || (r.Kind != "" && checkID(r.Kind, d.maxIDLen) != nil) {
			t.Fatalf("Decode(%q) = sensor %q kind %q", payload, r.Sensor, r.Kind)
		}
		if r.Time.After(arrived.Add(d.maxSkew)) || r.Time.Before(d.minTime) || !r.Arrived.Equal(arrived) {
			t.Fatalf("Decode(%q) = time %v", payload, r.Time)
		}
		if !utf8.ValidString(r.Unit) || len(r.Unit) > maxUnitLen {
			t.Fatalf("Decode(%q) = unit %q", payload, r.Unit)
		}
	}
	rs := Rejected(err)
	if (err == nil) != (len(rs) == 0) {
		t.Fatalf("Decode(%q) = %v, but Rejected gives %v", payload, err, rs)
	}
	for _, e := range rs {
		listed := false
		for _, r := range Reasons {
			listed = listed || e.Reason == r
		}
		if !listed || e.Err == nil || e.Error() == "" {
			t.Fatalf("Decode(%q): rejection %+v", payload, e)
		}
	}
}

func seeds(f *testing.F, topicPrefix string) {
	for _, tt := range decodeTests {
		if strings.HasPrefix(tt.topic, topicPrefix) && len(tt.payload) < 4096 {
			f.Add(tt.payload)
		}
	}
}

// isBadJSON reports whether err rejects the whole payload as bad JSON.
func isBadJSON(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Reason == ReasonBadJSON && e.Index < 0
}

// depth is the bracket nesting of a JSON text (outside strings).
func depth(b []byte) int {
	max, d, in, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && (c == '{' || c == '['):
			d++
			max = maxInt(max, d)
		case !in && (c == '}' || c == ']'):
			d--
		}
	}
	return max
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// FuzzDecodeJSON checks the JSON codec against encoding/json: the same
// documents are valid, and the value found at the nested path is the same.
func FuzzDecodeJSON(f *testing.F) {
	seeds(f, "json/")
	seeds(f, "sensors/")
	f.Add(`{"data":{"temp":{"value":-1.5e-3}}}`)
	d := newTestDecoder(f)
	f.Fuzz(func(t *testing.T, payload string) {
		b := []byte(payload)
		out, err := checkDecode(t, d, "json/s", b)
		if len(b) > d.maxPayload {
			return
		}
		trimmed := trimSpace(b)
		if len(trimmed) == 0 {
			return // missing_value, not bad JSON
		}
		if utf8.Valid(b) && depth(b) < maxDepth-1 {
			if valid := json.Valid(b); valid == isBadJSON(err) {
				t.Fatalf("Decode(%q): bad_json = %v; json.Valid = %v (%v)", payload, isBadJSON(err), valid, err)
			}
		}
		var doc struct {
			Data struct {
				Temp struct {
					Value *float64 `json:"value"`
				} `json:"temp"`
			} `json:"data"`
		}
		if len(out) == 1 && trimmed[0] == '{' && json.Unmarshal(b, &doc) == nil && doc.Data.Temp.Value != nil {
			if *doc.Data.Temp.Value != out[0].Value {
				t.Fatalf("Decode(%q) = %v; encoding/json says %v", payload, out[0].Value, *doc.Data.Temp.Value)
			}
		}
	})
}

// FuzzDecodeNumber checks the bare number codec.
func FuzzDecodeNumber(f *testing.F) {
	seeds(f, "num/")
	seeds(f, "sensors/")
	d := newTestDecoder(f)
	f.Fuzz(func(t *testing.T, payload string) {
		out, err := checkDecode(t, d, "num/s", []byte(payload))
		if len(out) > 1 || (len(out) == 1) == (err != nil) {
			t.Fatalf("Decode(%q) = %v, %v; want one reading or one error", payload, out, err)
		}
	})
}

// FuzzDecodeAuto checks the default topic: numbers, objects and batches.
func FuzzDecodeAuto(f *testing.F) {
	seeds(f, "sensors/")
	d := newTestDecoder(f)
	f.Fuzz(func(t *testing.T, payload string) {
		checkDecode(t, d, "sensors/t1/temp", []byte(payload))
	})
}

// FuzzDecodeBatch checks batches: each item yields a reading or a rejection.
func FuzzDecodeBatch(f *testing.F) {
	seeds(f, "batch/")
	seeds(f, "sensors/")
	f.Add(`[{"id":"a","v":1,"t":"2024-11-28T11:00:00Z"},{"id":"b","v":"x"},2]`)
	d := newTestDecoder(f)
	f.Fuzz(func(t *testing.T, payload string) {
		b := []byte(payload)
		out, err := checkDecode(t, d, "batch/k", b)
		var items []json.RawMessage
		if len(b) > d.maxPayload || !utf8.Valid(b) || depth(b) >= maxDepth-1 || json.Unmarshal(b, &items) != nil {
			return
		}
		if isBadJSON(err) {
			t.Fatalf("Decode(%q) = %v; encoding/json accepts it", payload, err)
		}
		if got := len(out) + len(Rejected(err)); got != len(items) {
			t.Fatalf("Decode(%q): %d readings + %d rejections; want %d items", payload, len(out), len(Rejected(err)), len(items))
		}
	})
}
