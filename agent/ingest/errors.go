package ingest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/edgeagent/edgeagent/agent"
)

// ErrNoMatch is returned by Decode when no topic template matches the topic.
// Such a message is not a reading and not a rejection: the broker carries it as
// any broker would, and the caller counts it apart (edgeagent_mqtt_unmatched_total).
// It is agent.ErrUnmatched, so agent.Intake recognises it without importing ingest.
var ErrNoMatch = agent.ErrUnmatched

// Reason is why a payload or a batch item was rejected. The values are stable,
// low-cardinality label values for edgeagent_readings_rejected_total{reason}.
type Reason string

// The reasons Decode rejects with. The pipeline adds its own (too_many_sensors,
// storage_failed, shutting_down).
const (
	ReasonPayloadTooLarge Reason = "payload_too_large" // len(payload) > Options.MaxPayload
	ReasonBadJSON         Reason = "bad_json"          // truncated, junk, nesting too deep, invalid UTF-8
	ReasonNotNumeric      Reason = "not_numeric"       // the value is text, an object, an array
	ReasonNotFinite       Reason = "not_finite"        // NaN, ±Inf, or a number that overflows float64
	ReasonMissingValue    Reason = "missing_value"     // no value field, null, "", "None", "unavailable"
	ReasonFutureTimestamp Reason = "future_timestamp"  // later than arrival + Options.MaxSkew
	ReasonBadTimestamp    Reason = "bad_timestamp"     // not a number or RFC 3339 string, out of range
	ReasonBadSensorID     Reason = "bad_sensor_id"     // empty, too long, control characters, not a string
	ReasonNoValues        Reason = "no_values"         // a mapped JSON object without any value to map
	ReasonBadLiveness     Reason = "bad_liveness"      // a liveness payload that is neither online nor offline
	ReasonBadLine         Reason = "bad_line_protocol" // InfluxDB line protocol syntax
	ReasonBadProtobuf     Reason = "bad_protobuf"      // Sparkplug B payload that is not a valid Payload message
	ReasonUnknownAlias    Reason = "unknown_alias"     // Sparkplug metric by alias before any BIRTH named it
	ReasonBadDiscovery    Reason = "bad_discovery"     // Home Assistant discovery config that cannot be used
)

// Reasons lists every Reason Decode can return, so a caller can pre-resolve
// its labelled metric children. Callers must not modify it.
var Reasons = []Reason{
	ReasonPayloadTooLarge, ReasonBadJSON, ReasonNotNumeric, ReasonNotFinite,
	ReasonMissingValue, ReasonFutureTimestamp, ReasonBadTimestamp, ReasonBadSensorID,
	ReasonNoValues, ReasonBadLiveness, ReasonBadLine, ReasonBadProtobuf, ReasonUnknownAlias, ReasonBadDiscovery,
}

// Error is one rejected payload or batch item. It matches agent.ErrInvalidReading
// with errors.Is.
type Error struct {
	Reason Reason
	Topic  string
	Field  string // the configured field path ("value", "a.b.c"), "{kind}", or "" for the whole payload
	Index  int    // batch item index; -1 when the payload is not a batch
	Err    error  // what was wrong, e.g. `"abc" is not a number`
}

// Error says what was wrong and where, e.g.
// `topic "sensors/t1/temp": item 2: field "value": "abc" is not a number`.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "topic %q", e.Topic)
	if e.Index >= 0 {
		fmt.Fprintf(&b, ": item %d", e.Index)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(string(e.Reason))
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is agent.ErrInvalidReading.
func (e *Error) Is(target error) bool { return target == agent.ErrInvalidReading }

// Errors is returned by Decode when some items of a batch were rejected; the
// good items' readings are still appended. It has at least one element.
type Errors []*Error

func (es Errors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	const show = 3
	var b strings.Builder
	fmt.Fprintf(&b, "%d items rejected: ", len(es))
	for i, e := range es {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(es)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As access to each item's *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Rejected returns the rejections in an error returned by Decode: one *Error
// for a rejected payload, one per item for a batch, nil for nil and ErrNoMatch.
// The caller counts each by its Reason.
func Rejected(err error) []*Error {
	switch e := err.(type) {
	case nil:
		return nil
	case *Error:
		return []*Error{e}
	case Errors:
		return e
	}
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return nil
}

// excerpt returns at most 32 bytes of b for an error message.
func excerpt(b []byte) string {
	const max = 32
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// RejectReason implements agent.Rejection: the label of
// edgeagent_readings_rejected_total for this rejection.
func (e *Error) RejectReason() string { return string(e.Reason) }
