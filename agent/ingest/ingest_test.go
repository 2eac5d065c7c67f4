package ingest

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

var arrived = time.Date(2024, 11, 28, 12, 0, 0, 0, time.UTC)

func ms(d time.Duration) string { return itoa(arrived.Add(d).UnixMilli()) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// testTopics exercises every codec and template form.
var testTopics = []Topic{
	DefaultTopics()[0], // sensors/{sensor}/{kind}, auto, value, ts, sensor
	{Pattern: "json/{sensor}", Format: FormatJSON, Value: "data.temp.value", Time: "data.time", UnitField: "data.unit", Kind: "temperature", Unit: "°C"},
	{Pattern: "num/{sensor}", Format: FormatNumber, Unit: "°C", Kind: "temperature"},
	{Pattern: "multi/{sensor+}/state", Format: FormatNumber},
	{Pattern: "tele/+/{sensor}/#", Format: FormatJSON, Value: "v"},
	{Pattern: "batch/{kind}", Format: FormatJSON, Sensor: "id", Value: "v", Time: "t"},
	{Pattern: "ms/{sensor}", Format: FormatJSON, Time: "ts", TimeFormat: TimeUnixMs},
	{Pattern: "rfc/{sensor}", Format: FormatJSON, Time: "ts", TimeFormat: TimeRFC3339},
	{Pattern: "sec/{sensor}", Format: FormatJSON, Time: "ts", TimeFormat: TimeUnixS},
}

func newTestDecoder(t testing.TB) *Decoder {
	t.Helper()
	d, err := New(Options{Topics: testTopics})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type want struct {
	sensor, kind, unit string
	value              float64
	time               time.Time // zero: arrived
	flags              agent.Flags
}

type decodeTest struct {
	name    string
	topic   string
	payload string
	want    []want
	reasons []Reason // rejections, in order; nil when none
	errText string   // substring of the error text
	noMatch bool
}

var decodeTests = []decodeTest{
	// The default template, auto format.
	{name: "object with ms", topic: "sensors/t1/temp", payload: `{"value":21.7,"ts":` + ms(-time.Second) + `}`,
		want: []want{{sensor: "t1", kind: "temp", value: 21.7, time: arrived.Add(-time.Second)}}},
	{name: "bare number", topic: "sensors/t1/temp", payload: `21.7`, want: []want{{sensor: "t1", kind: "temp", value: 21.7}}},
	{name: "bare number newline", topic: "sensors/t1/temp", payload: " -3e2\r\n", want: []want{{sensor: "t1", kind: "temp", value: -300}}},
	{name: "bare plus and dot", topic: "sensors/t1/temp", payload: "+.5", want: []want{{sensor: "t1", kind: "temp", value: 0.5}}},
	{name: "quoted number", topic: "sensors/t1/temp", payload: `"21.7"`, want: []want{{sensor: "t1", kind: "temp", value: 21.7}}},
	{name: "numeric string value", topic: "sensors/t1/temp", payload: `{"value":"21.7"}`, want: []want{{sensor: "t1", kind: "temp", value: 21.7}}},
	{name: "boolean value", topic: "sensors/door/contact", payload: `{"value":true}`, want: []want{{sensor: "door", kind: "contact", value: 1}}},
	{name: "false value", topic: "sensors/door/contact", payload: `{"value":false}`, want: []want{{sensor: "door", kind: "contact", value: 0}}},
	{name: "rfc3339 time", topic: "sensors/t1/temp", payload: `{"value":1,"ts":"2024-11-28T12:59:30.5+01:00"}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-29500 * time.Millisecond)}}},
	{name: "seconds time", topic: "sensors/t1/temp", payload: `{"value":1,"ts":` + itoa(arrived.Unix()-10) + `}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-10 * time.Second)}}},
	{name: "fractional seconds", topic: "sensors/t1/temp", payload: `{"value":1,"ts":` + itoa(arrived.Unix()-10) + `.25}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-9750 * time.Millisecond)}}},
	{name: "microseconds time", topic: "sensors/t1/temp", payload: `{"value":1,"ts":` + itoa(arrived.UnixMicro()-7) + `}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-7 * time.Microsecond)}}},
	{name: "nanoseconds time", topic: "sensors/t1/temp", payload: `{"value":1,"ts":` + itoa(arrived.UnixNano()-7) + `}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-7)}}},
	{name: "numeric string time", topic: "sensors/t1/temp", payload: `{"value":1,"ts":"` + ms(-time.Second) + `"}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-time.Second)}}},
	{name: "time within skew", topic: "sensors/t1/temp", payload: `{"value":1,"ts":` + ms(30*time.Second) + `}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(30 * time.Second)}}},
	{name: "1970 time restamped", topic: "sensors/t1/temp", payload: `{"value":1,"ts":5000}`,
		want: []want{{sensor: "t1", kind: "temp", value: 1, flags: agent.FlagRestamped}}},
	{name: "null time", topic: "sensors/t1/temp", payload: `{"value":1,"ts":null}`, want: []want{{sensor: "t1", kind: "temp", value: 1}}},
	{name: "sensor field overrides topic", topic: "sensors/gw/temp", payload: `{"sensor":"k\u00fcche","value":-0}`,
		want: []want{{sensor: "küche", kind: "temp", value: 0}}},
	{name: "null sensor field falls back", topic: "sensors/t1/temp", payload: `{"sensor":null,"value":2}`, want: []want{{sensor: "t1", kind: "temp", value: 2}}},
	{name: "duplicate key last wins", topic: "sensors/t1/temp", payload: `{"value":1,"value":2}`, want: []want{{sensor: "t1", kind: "temp", value: 2}}},
	{name: "other keys and white space", topic: "sensors/t1/temp",
		payload: " {\n \"rssi\": -70, \"meta\": {\"value\": 9, \"a\": [1, {\"b\": null}]},\t\"value\" : 1e3 }\n",
		want:    []want{{sensor: "t1", kind: "temp", value: 1000}}},
	{name: "huge finite", topic: "sensors/t1/temp", payload: `1.7976931348623157e308`, want: []want{{sensor: "t1", kind: "temp", value: math.MaxFloat64}}},

	// Nested paths, unit field, fixed kind and unit.
	{name: "nested paths", topic: "json/boiler", payload: `{"data":{"temp":{"value":63.5},"time":"2024-11-28T11:59:00Z","unit":"°F"}}`,
		want: []want{{sensor: "boiler", kind: "temperature", unit: "°F", value: 63.5, time: arrived.Add(-time.Minute)}}},
	{name: "escaped key", topic: "json/boiler", payload: `{"d\u0061ta":{"temp":{"value":1}}}`,
		want: []want{{sensor: "boiler", kind: "temperature", unit: "°C", value: 1}}},
	{name: "uncommon unit", topic: "json/boiler", payload: `{"data":{"temp":{"value":1},"unit":"µg/m³"}}`,
		want: []want{{sensor: "boiler", kind: "temperature", unit: "µg/m³", value: 1}}},
	{name: "bad unit ignored", topic: "json/boiler", payload: `{"data":{"temp":{"value":1},"unit":5}}`,
		want: []want{{sensor: "boiler", kind: "temperature", unit: "°C", value: 1}}},
	{name: "json scalar", topic: "json/boiler", payload: `7`, want: []want{{sensor: "boiler", kind: "temperature", unit: "°C", value: 7}}},

	// Number format and templates.
	{name: "number format", topic: "num/t2", payload: "19.25", want: []want{{sensor: "t2", kind: "temperature", unit: "°C", value: 19.25}}},
	{name: "multi-level sensor", topic: "multi/living/sensor/t/state", payload: "1", want: []want{{sensor: "living/sensor/t", value: 1}}},
	{name: "plus and hash", topic: "tele/x/s1/a/b", payload: `{"v":1}`, want: []want{{sensor: "s1", value: 1}}},
	{name: "hash matches zero levels", topic: "tele/x/s1", payload: `{"v":1}`, want: []want{{sensor: "s1", value: 1}}},
	{name: "explicit ms", topic: "ms/s", payload: `{"value":1,"ts":5000000000}`, want: []want{{sensor: "s", value: 1, flags: agent.FlagRestamped}}},
	{name: "explicit seconds", topic: "sec/s", payload: `{"value":1,"ts":"` + itoa(arrived.Unix()) + `"}`, want: []want{{sensor: "s", value: 1}}},
	{name: "explicit rfc3339", topic: "rfc/s", payload: `{"value":1,"ts":"2024-11-28T12:00:00Z"}`, want: []want{{sensor: "s", value: 1}}},

	// Batches.
	{name: "batch", topic: "sensors/t1/temp", payload: `[{"value":1,"ts":` + ms(-2*time.Second) + `},{"value":2,"sensor":"t9"},3]`,
		want: []want{
			{sensor: "t1", kind: "temp", value: 1, time: arrived.Add(-2 * time.Second)},
			{sensor: "t9", kind: "temp", value: 2},
			{sensor: "t1", kind: "temp", value: 3},
		}},
	{name: "batch with sensor field", topic: "batch/humidity", payload: `[{"id":"a","v":40},{"id":"b","v":41.5,"t":"` + ms(-time.Minute) + `"}]`,
		want: []want{{sensor: "a", kind: "humidity", value: 40}, {sensor: "b", kind: "humidity", value: 41.5, time: arrived.Add(-time.Minute)}}},
	{name: "empty batch", topic: "sensors/t1/temp", payload: ` [ ] `},
	{name: "batch with bad items", topic: "sensors/t1/temp",
		payload: `[{"value":1},{"value":"abc"},{"value":"NaN"},{},[1],"x",null,{"value":5,"ts":` + ms(time.Hour) + `},{"sensor":"","value":1},2]`,
		want:    []want{{sensor: "t1", kind: "temp", value: 1}, {sensor: "t1", kind: "temp", value: 2}},
		reasons: []Reason{ReasonNotNumeric, ReasonNotFinite, ReasonMissingValue, ReasonNotNumeric, ReasonNotNumeric,
			ReasonMissingValue, ReasonFutureTimestamp, ReasonBadSensorID},
		errText: `8 items rejected: topic "sensors/t1/temp": item 1: field "value": "abc" is not a number`},
	{name: "batch item without sensor", topic: "batch/humidity", payload: `[{"v":1}]`, reasons: []Reason{ReasonBadSensorID},
		errText: `topic "batch/humidity": item 0: field "{sensor}": empty id`},
	{name: "truncated batch", topic: "sensors/t1/temp", payload: `[{"value":1},{"value":2`, reasons: []Reason{ReasonBadJSON}},
	{name: "batch trailing comma", topic: "sensors/t1/temp", payload: `[1,2,]`, reasons: []Reason{ReasonBadJSON}},

	// Rejections.
	{name: "not numeric", topic: "sensors/t1/temp", payload: `{"value":"abc"}`, reasons: []Reason{ReasonNotNumeric},
		errText: `topic "sensors/t1/temp": field "value": "abc" is not a number`},
	{name: "bare word", topic: "sensors/t1/temp", payload: `warm`, reasons: []Reason{ReasonNotNumeric}, errText: `payload "warm" is not a number`},
	{name: "hex is not decimal", topic: "num/t2", payload: `0x10`, reasons: []Reason{ReasonNotNumeric}},
	{name: "two numbers", topic: "num/t2", payload: `21.7 22`, reasons: []Reason{ReasonNotNumeric}},
	{name: "object value", topic: "sensors/t1/temp", payload: `{"value":{"v":1}}`, reasons: []Reason{ReasonNotNumeric}},
	{name: "array value", topic: "sensors/t1/temp", payload: `{"value":[1]}`, reasons: []Reason{ReasonNotNumeric}},
	{name: "escaped numeric string", topic: "sensors/t1/temp", payload: `{"value":"\u0031"}`, reasons: []Reason{ReasonNotNumeric}},
	{name: "NaN string", topic: "sensors/t1/temp", payload: `{"value":"NaN"}`, reasons: []Reason{ReasonNotFinite}},
	{name: "bare NaN", topic: "sensors/t1/temp", payload: `NaN`, reasons: []Reason{ReasonNotFinite}},
	{name: "bare -Infinity", topic: "num/t2", payload: `-Infinity`, reasons: []Reason{ReasonNotFinite}},
	{name: "overflow", topic: "sensors/t1/temp", payload: `{"value":1e999}`, reasons: []Reason{ReasonNotFinite}},
	{name: "bare overflow", topic: "num/t2", payload: `-1e400`, reasons: []Reason{ReasonNotFinite}},
	{name: "NaN in JSON", topic: "sensors/t1/temp", payload: `{"value":NaN}`, reasons: []Reason{ReasonBadJSON}},
	{name: "null value", topic: "sensors/t1/temp", payload: `{"value":null}`, reasons: []Reason{ReasonMissingValue}},
	{name: "missing value", topic: "sensors/t1/temp", payload: `{"val":1}`, reasons: []Reason{ReasonMissingValue},
		errText: `topic "sensors/t1/temp": field "value": missing`},
	{name: "missing nested", topic: "json/boiler", payload: `{"data":{"temp":5}}`, reasons: []Reason{ReasonMissingValue}},
	{name: "empty object", topic: "sensors/t1/temp", payload: `{}`, reasons: []Reason{ReasonMissingValue}},
	{name: "empty payload", topic: "sensors/t1/temp", payload: ``, reasons: []Reason{ReasonMissingValue}},
	{name: "empty json payload", topic: "json/boiler", payload: " \n", reasons: []Reason{ReasonMissingValue}},
	{name: "None", topic: "sensors/t1/temp", payload: `None`, reasons: []Reason{ReasonMissingValue}},
	{name: "unavailable", topic: "num/t2", payload: `"unavailable"`, reasons: []Reason{ReasonMissingValue}},
	{name: "truncated json", topic: "sensors/t1/temp", payload: `{"value":21.`, reasons: []Reason{ReasonBadJSON}},
	{name: "unterminated object", topic: "sensors/t1/temp", payload: `{"value":21.7`, reasons: []Reason{ReasonBadJSON}},
	{name: "unterminated string", topic: "sensors/t1/temp", payload: `{"value":"21`, reasons: []Reason{ReasonBadJSON}},
	{name: "single quotes", topic: "sensors/t1/temp", payload: `{'value':1}`, reasons: []Reason{ReasonBadJSON}},
	{name: "leading zero", topic: "sensors/t1/temp", payload: `{"value":01}`, reasons: []Reason{ReasonBadJSON}},
	{name: "trailing data", topic: "sensors/t1/temp", payload: `{"value":1} x`, reasons: []Reason{ReasonBadJSON}},
	{name: "two objects", topic: "sensors/t1/temp", payload: `{"value":1}{"value":2}`, reasons: []Reason{ReasonBadJSON}},
	{name: "binary junk", topic: "sensors/t1/temp", payload: "\x00\xff\xfe\x01", reasons: []Reason{ReasonNotNumeric}},
	{name: "binary junk json", topic: "json/boiler", payload: "\x00\xff\xfe\x01", reasons: []Reason{ReasonBadJSON}},
	{name: "binary junk object", topic: "sensors/t1/temp", payload: "{\xff\x00}", reasons: []Reason{ReasonBadJSON}},
	{name: "invalid utf-8 string", topic: "sensors/t1/temp", payload: "{\"value\":1,\"x\":\"\xff\"}", reasons: []Reason{ReasonBadJSON}},
	{name: "control char in string", topic: "sensors/t1/temp", payload: "{\"value\":1,\"x\":\"\x01\"}", reasons: []Reason{ReasonBadJSON}},
	{name: "bad escape", topic: "sensors/t1/temp", payload: `{"value":1,"x":"\q"}`, reasons: []Reason{ReasonBadJSON}},
	{name: "deep nesting", topic: "sensors/t1/temp", payload: strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100), reasons: []Reason{ReasonBadJSON}},
	{name: "deep array", topic: "sensors/t1/temp", payload: strings.Repeat("[", 40) + strings.Repeat("]", 40), reasons: []Reason{ReasonBadJSON}},
	{name: "1 MB payload", topic: "sensors/t1/temp", payload: `{"value":1,"pad":"` + strings.Repeat("x", 1<<20) + `"}`,
		reasons: []Reason{ReasonPayloadTooLarge}, errText: `payload of 1048596 bytes is larger than 4096`},
	{name: "future timestamp", topic: "sensors/t1/temp", payload: `{"value":1,"ts":` + ms(2*time.Minute) + `}`,
		reasons: []Reason{ReasonFutureTimestamp}, errText: `field "ts": 2024-11-28T12:02:00Z is 2m0s after arrival (max_skew 1m0s)`},
	{name: "future rfc3339", topic: "sensors/t1/temp", payload: `{"value":1,"ts":"2030-01-01T00:00:00Z"}`, reasons: []Reason{ReasonFutureTimestamp}},
	{name: "word timestamp", topic: "sensors/t1/temp", payload: `{"value":1,"ts":"yesterday"}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "local time without offset", topic: "sensors/t1/temp", payload: `{"value":1,"ts":"2024-11-28T12:00:00"}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "bool timestamp", topic: "sensors/t1/temp", payload: `{"value":1,"ts":true}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "huge timestamp", topic: "sensors/t1/temp", payload: `{"value":1,"ts":1e30}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "huge negative timestamp", topic: "sensors/t1/temp", payload: `{"value":1,"ts":-1e30}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "number for rfc3339", topic: "rfc/s", payload: `{"value":1,"ts":1732795200000}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "string for unix_ms", topic: "ms/s", payload: `{"value":1,"ts":"2024-11-28T12:00:00Z"}`, reasons: []Reason{ReasonBadTimestamp}},
	{name: "empty sensor in topic", topic: "sensors//temp", payload: `1`, reasons: []Reason{ReasonBadSensorID},
		errText: `topic "sensors//temp": field "{sensor}": empty id`},
	{name: "empty kind in topic", topic: "sensors/t1/", payload: `1`, reasons: []Reason{ReasonBadSensorID}, errText: `field "{kind}"`},
	{name: "empty sensor field", topic: "sensors/t1/temp", payload: `{"sensor":"","value":1}`, reasons: []Reason{ReasonBadSensorID}},
	{name: "numeric sensor field", topic: "sensors/t1/temp", payload: `{"sensor":5,"value":1}`, reasons: []Reason{ReasonBadSensorID}},
	{name: "control char sensor", topic: "sensors/t1/temp", payload: `{"sensor":"a\u0001b","value":1}`, reasons: []Reason{ReasonBadSensorID}},
	{name: "C1 control sensor", topic: "sensors/t1/temp", payload: `{"sensor":"a\u0085b","value":1}`, reasons: []Reason{ReasonBadSensorID}},
	{name: "long sensor id", topic: "sensors/" + strings.Repeat("s", 129) + "/temp", payload: `1`, reasons: []Reason{ReasonBadSensorID},
		errText: `id of 129 bytes is longer than 128`},
	{name: "longest sensor id", topic: "sensors/" + strings.Repeat("s", 128) + "/temp", payload: `1`,
		want: []want{{sensor: strings.Repeat("s", 128), kind: "temp", value: 1}}},

	// Topics that are not readings.
	{name: "no match", topic: "other/t1/temp", payload: `1`, noMatch: true},
	{name: "too few levels", topic: "sensors/t1", payload: `1`, noMatch: true},
	{name: "too many levels", topic: "sensors/t1/temp/x", payload: `1`, noMatch: true},
	{name: "multi needs a level", topic: "multi/state", payload: `1`, noMatch: true},
	{name: "no match even if junk", topic: "zigbee2mqtt/bridge", payload: "\xff", noMatch: true},
}

func TestDecoder_Decode(t *testing.T) {
	runDecodeTests(t, newTestDecoder(t), decodeTests)
}

// runDecodeTests decodes each test's payload and checks readings, reasons and
// error text.
func runDecodeTests(t *testing.T, d *Decoder, tests []decodeTest) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []agent.Reading{{Sensor: "earlier"}}
			out, err := d.Decode(tt.topic, []byte(tt.payload), arrived, prefix)
			if len(out) == 0 || out[0].Sensor != "earlier" {
				t.Fatalf("Decode(%q) lost the readings already in out: %v", tt.payload, out)
			}
			out = out[1:]
			if tt.noMatch {
				if !errors.Is(err, ErrNoMatch) || len(out) != 0 {
					t.Fatalf("Decode(%q, %q) = %v, %v; want ErrNoMatch", tt.topic, tt.payload, out, err)
				}
				return
			}
			if errors.Is(err, ErrNoMatch) {
				t.Fatalf("Decode(%q) = ErrNoMatch", tt.topic)
			}
			var got []Reason
			for _, e := range Rejected(err) {
				got = append(got, e.Reason)
				if e.Topic != tt.topic {
					t.Errorf("rejection topic = %q; want %q", e.Topic, tt.topic)
				}
			}
			if !equal(got, tt.reasons) {
				t.Fatalf("Decode(%q) rejected %v (err %v); want %v", tt.payload, got, err, tt.reasons)
			}
			if err != nil {
				if !errors.Is(err, agent.ErrInvalidReading) {
					t.Errorf("error %v is not agent.ErrInvalidReading", err)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("error %q does not contain %q", err, tt.errText)
				}
			} else if tt.errText != "" {
				t.Errorf("no error; want one containing %q", tt.errText)
			}
			if len(out) != len(tt.want) {
				t.Fatalf("Decode(%q) = %d readings %+v; want %d", tt.payload, len(out), out, len(tt.want))
			}
			for i, w := range tt.want {
				r := out[i]
				wt := w.time
				if wt.IsZero() {
					wt = arrived
				}
				if r.Sensor != w.sensor || r.Kind != w.kind || r.Unit != w.unit || r.Value != w.value ||
					!r.Time.Equal(wt) || !r.Arrived.Equal(arrived) || r.Flags != w.flags || r.Commit != nil {
					t.Errorf("reading %d = %+v; want %+v at %v", i, r, w, wt)
				}
			}
		})
	}
}

func equal(a, b []Reason) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestError_Error(t *testing.T) {
	d := newTestDecoder(t)
	_, err := d.Decode("sensors/t1/temp", []byte(`{"value":"abc"}`), arrived, nil)
	const want = `topic "sensors/t1/temp": field "value": "abc" is not a number`
	if err == nil || err.Error() != want {
		t.Fatalf("Decode error = %v; want %s", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonNotNumeric || e.Field != "value" || e.Index != -1 {
		t.Fatalf("errors.As = %+v", e)
	}
	_, err = d.Decode("sensors/t1/temp", []byte(`[1,"x",{"value":null}]`), arrived, nil)
	if !errors.As(err, &e) || e.Index != 1 {
		t.Fatalf("errors.As on a batch = %+v (%v); want item 1", e, err)
	}
	const wantBatch = `2 items rejected: topic "sensors/t1/temp": item 1: "x" is not a number; topic "sensors/t1/temp": item 2: field "value": is null`
	if err.Error() != wantBatch {
		t.Fatalf("batch error = %q; want %q", err, wantBatch)
	}
}

func TestRejected(t *testing.T) {
	e1 := &Error{Reason: ReasonBadJSON, Index: -1}
	e2 := &Error{Reason: ReasonNotFinite, Index: 3}
	for _, tt := range []struct {
		err  error
		want []*Error
	}{
		{nil, nil},
		{ErrNoMatch, nil},
		{e1, []*Error{e1}},
		{Errors{e1, e2}, []*Error{e1, e2}},
		{errors.Join(errors.New("x"), e2), []*Error{e2}},
	} {
		got := Rejected(tt.err)
		if len(got) != len(tt.want) {
			t.Fatalf("Rejected(%v) = %v; want %v", tt.err, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("Rejected(%v)[%d] = %v; want %v", tt.err, i, got[i], tt.want[i])
			}
		}
	}
}

// TestReasons checks that every reason a test produces is listed, and that the
// list has no duplicates.
func TestReasons(t *testing.T) {
	listed := map[Reason]bool{}
	for _, r := range Reasons {
		if listed[r] {
			t.Errorf("reason %q listed twice", r)
		}
		listed[r] = true
	}
	seen := map[Reason]bool{}
	for _, tt := range append(slices.Clone(decodeTests), deviceTests...) {
		for _, r := range tt.reasons {
			seen[r] = true
		}
	}
	for _, r := range Reasons {
		if !seen[r] {
			t.Errorf("no test rejects with %q", r)
		}
	}
}

func TestDecoder_Decode_options(t *testing.T) {
	d, err := New(Options{MaxPayload: 28, MaxSkew: time.Hour, MaxIDLen: 4,
		MinTime: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		topic, payload string
		reason         Reason // "" when accepted
		flags          agent.Flags
	}{
		{"sensors/abcd/t", `{"value":1}`, "", 0},
		{"sensors/abcde/t", `1`, ReasonBadSensorID, 0},
		{"sensors/a/t", `{"value":1,"x":1,"y":1234567}`, ReasonPayloadTooLarge, 0},
		{"sensors/a/t", `{"value":1,"ts":` + itoa(arrived.Unix()+1800) + `}`, "", 0}, // within an hour
		{"sensors/a/t", `{"ts":` + itoa(arrived.Unix()+1800) + `}`, ReasonMissingValue, 0},
		{"sensors/a/t", `{"value":1,"ts":1.7e9}`, "", agent.FlagRestamped}, // 2023-11, before MinTime
	} {
		out, err := d.Decode(tt.topic, []byte(tt.payload), arrived, nil)
		rs := Rejected(err)
		switch {
		case tt.reason == "" && (err != nil || len(out) != 1 || out[0].Flags != tt.flags):
			t.Errorf("Decode(%q, %q) = %+v, %v; want one reading with flags %v", tt.topic, tt.payload, out, err, tt.flags)
		case tt.reason != "" && (len(rs) != 1 || rs[0].Reason != tt.reason):
			t.Errorf("Decode(%q, %q) = %v; want %s", tt.topic, tt.payload, err, tt.reason)
		}
	}
}

func TestNew_errors(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		want string
	}{
		{Options{Topics: []Topic{{Pattern: ""}}}, "ingest.topics[0].pattern: must not be empty"},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}"}, {Pattern: "a/{sensr}"}}}, "ingest.topics[1].pattern: \"a/{sensr}\": unknown placeholder {sensr}"},
		{Options{Topics: []Topic{{Pattern: "a/x{sensor}"}}}, "ingest.topics[0].pattern: \"a/x{sensor}\": a placeholder must be a whole level"},
		{Options{Topics: []Topic{{Pattern: "a/{sensor"}}}, "a placeholder must be a whole level"},
		{Options{Topics: []Topic{{Pattern: "a+/{sensor}"}}}, "wildcard must be a whole level"},
		{Options{Topics: []Topic{{Pattern: "#/{sensor}"}}}, "# must be the last level"},
		{Options{Topics: []Topic{{Pattern: "{sensor+}/#"}}}, "at most one multi-level"},
		{Options{Topics: []Topic{{Pattern: "{sensor}/{sensor}"}}}, "appears twice"},
		{Options{Topics: []Topic{{Pattern: "a/{kind}"}}}, "ingest.topics[0].pattern: \"a/{kind}\" has no {sensor} placeholder"},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", Format: "xml"}}}, `ingest.topics[0].format: "xml" is not one of json, number, auto`},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", Format: "number", Time: "ts"}}}, "ingest.topics[0].time: format number has no fields"},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", Value: "a..b"}}}, `ingest.topics[0].value: "a..b" has an empty path segment`},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", UnitField: "."}}}, `ingest.topics[0].unit_field`},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", Value: strings.Repeat("a.", 40) + "a"}}}, "nested deeper"},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", TimeFormat: "unix"}}}, `ingest.topics[0].time_format: "unix" is not one of auto, unix_s`},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", Kind: "a\tb"}}}, "ingest.topics[0].kind: id \"a\\tb\" has a control character"},
		{Options{Topics: []Topic{{Pattern: "a/{sensor}", Unit: strings.Repeat("u", 33)}}}, "ingest.topics[0].unit:"},
		{Options{MaxPayload: -1}, "ingest.max_payload"},
		{Options{MaxSkew: -1}, "ingest.max_skew"},
		{Options{MaxIDLen: -1}, "ingest.max_id_len"},
	} {
		_, err := New(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v; want an error containing %q", tt.opts, err, tt.want)
		}
	}
	if _, err := New(Options{Topics: []Topic{{Pattern: "batch", Sensor: "id"}}}); err != nil {
		t.Errorf("New with a sensor field and no {sensor}: %v", err)
	}
}

func TestDecoder_Decode_concurrent(t *testing.T) {
	d := newTestDecoder(t)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			var out []agent.Reading
			for i := 0; i < 200; i++ {
				tt := decodeTests[(i*7+g)%len(decodeTests)]
				out, _ = d.Decode(tt.topic, []byte(tt.payload), arrived, out[:0])
				if len(out) != len(tt.want) {
					t.Errorf("%s: %d readings; want %d", tt.name, len(out), len(tt.want))
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}
