package upstream

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// jsonSchema is the subset of JSON Schema docs/alert-schema.json uses.
type jsonSchema struct {
	Type       string                 `json:"type"`
	Required   []string               `json:"required"`
	Properties map[string]*jsonSchema `json:"properties"`
	Enum       []string               `json:"enum"`
	Format     string                 `json:"format"`
	MinLength  *int                   `json:"minLength"`
	Minimum    *float64               `json:"minimum"`
	Maximum    *float64               `json:"maximum"`
}

// validate checks v against s and returns every violation, by path.
func (s *jsonSchema) validate(path string, v any) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return errs
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("required field %q missing", r)
			}
		}
		for k, fv := range m {
			ps, ok := s.Properties[k]
			if !ok {
				bad("field %q is not documented in the schema", k)
				continue
			}
			errs = append(errs, ps.validate(path+"."+k, fv)...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
			return errs
		}
		if s.MinLength != nil && len(str) < *s.MinLength {
			bad("shorter than %d", *s.MinLength)
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			bad("%q not one of %v", str, s.Enum)
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("not RFC 3339: %v", err)
			}
		}
	case "number", "integer":
		f, ok := v.(float64)
		if !ok {
			bad("want a number, got %T", v)
			return errs
		}
		if s.Type == "integer" && f != float64(int64(f)) {
			bad("want an integer, got %v", f)
		}
		if s.Minimum != nil && f < *s.Minimum || s.Maximum != nil && f > *s.Maximum {
			bad("%v out of range", f)
		}
	default:
		bad("schema type %q not supported by this test", s.Type)
	}
	return errs
}

// TestAlertSchema validates the payloads storage puts in the outbox (the
// bytes the uplink publishes) for each state against docs/alert-schema.json.
func TestAlertSchema(t *testing.T) {
	b, err := os.ReadFile("../../docs/alert-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema jsonSchema
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatalf("docs/alert-schema.json: %v", err)
	}
	for _, f := range []string{"id", "gateway", "sensor", "kind", "state", "detector", "reason", "score", "value", "started_at", "updated_at", "baseline"} {
		if schema.Properties[f] == nil {
			t.Errorf("schema does not document %q (issue 6)", f)
		}
	}
	ob := openStore(t, "")
	as, _ := alertBurst("schema", 3, 1)
	as[0].ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	as[0].Gateway = "" // storage stamps its gateway
	as[1].State = agent.AlertFlapping
	as[2].State = agent.AlertResolved
	as[2].ResolvedAt = as[2].UpdatedAt.Add(time.Minute)
	as[2].Kind, as[2].Unit = "", ""
	ob.write(t, as)
	es, err := ob.OutboxPeek(0, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("OutboxPeek = %d entries, %v; want 3", len(es), err)
	}
	for _, e := range es {
		var v any
		if err := json.Unmarshal(e.Payload, &v); err != nil {
			t.Fatalf("seq %d: %v", e.Seq, err)
		}
		for _, msg := range schema.validate("alert", v) {
			t.Errorf("seq %d payload %s: %s", e.Seq, e.Payload, msg)
		}
		if m := v.(map[string]any); m["gateway"] != "gw1" || e.Lane != LaneAlert || e.Sensor != m["sensor"] {
			t.Errorf("seq %d: lane %q sensor %q payload %s", e.Seq, e.Lane, e.Sensor, e.Payload)
		}
	}
	// The validator itself must reject what the schema forbids.
	for _, broken := range []string{
		`{"id":"x"}`,
		`{"id":"x","gateway":"g","sensor":"s","detector":"d","state":"pending","reason":"","score":0.5,"value":1,"first_value":1,"baseline":{"mean":0,"stddev":0,"lo":0,"hi":0,"n":0},"started_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`,
		`{"id":"x","gateway":"g","sensor":"s","detector":"d","state":"firing","reason":"","score":2,"value":1,"first_value":1,"baseline":{"mean":0,"stddev":0,"lo":0,"hi":0,"n":0.5},"started_at":"yesterday","updated_at":"2026-01-01T00:00:00Z","extra":1}`,
	} {
		var v any
		json.Unmarshal([]byte(broken), &v)
		if errs := schema.validate("alert", v); len(errs) == 0 {
			t.Errorf("validate(%s) found nothing wrong", broken)
		}
	}
}
