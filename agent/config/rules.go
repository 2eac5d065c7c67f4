package config

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Rule selects sensors and lists the filters and detectors they run, in
// order. The first rule whose match fits a sensor wins; sensors no rule
// matches run the built-in default rule (auto, flatline, silence), which a
// rule named "default" with an empty match replaces.
//
//	rules:
//	  - name: boilers
//	    match: {sensor: "boiler-*", kind: temperature}
//	    filters: [{type: calibrate, scale: 1.0, offset: -0.5}, {type: median, window: 5}]
//	    detectors: [{type: threshold, max: 90, clear_max: 85, for: 30s}, {type: auto}]
//	    alert: {open: 0.8, close: 0.5, for: 0s, resolve_after: 1m, repeat: 0s}
type Rule struct {
	Name      string           `yaml:"name"`
	Match     Match            `yaml:"match"`
	Filters   []FilterConfig   `yaml:"filters,omitempty"`
	Detectors []DetectorConfig `yaml:"detectors,omitempty"`
	Alert     AlertConfig      `yaml:"alert"`

	unknown []badKey // found while decoding, reported by validation
}

// Match selects sensors by id glob (path.Match syntax) and/or kind. Empty
// fields match anything.
type Match struct {
	Sensor string `yaml:"sensor,omitempty"`
	Kind   string `yaml:"kind,omitempty"`
}

// FilterConfig is one filter; only the keys of its type are allowed.
type FilterConfig struct {
	Type      string        `yaml:"type"`
	Scale     float64       `yaml:"scale,omitempty"`     // calibrate: 0 means 1
	Offset    float64       `yaml:"offset,omitempty"`    // calibrate
	Min       *float64      `yaml:"min,omitempty"`       // clamp (required)
	Max       *float64      `yaml:"max,omitempty"`       // clamp (required)
	Window    int           `yaml:"window,omitempty"`    // median: odd, 3..31, default 5
	Alpha     float64       `yaml:"alpha,omitempty"`     // ewma: (0,1], default 0.3
	HalfLife  time.Duration `yaml:"half_life,omitempty"` // ewma: wins over alpha
	Delta     float64       `yaml:"delta,omitempty"`     // deadband
	Heartbeat time.Duration `yaml:"heartbeat,omitempty"` // deadband: report anyway after this

	unknown []badKey
}

// DetectorConfig is one detector; only the keys of its type, plus for and
// resolve_after (overriding the rule's alert settings), are allowed.
type DetectorConfig struct {
	Type         string         `yaml:"type"`
	Min          *float64       `yaml:"min,omitempty"`          // threshold
	Max          *float64       `yaml:"max,omitempty"`          // threshold
	ClearMin     *float64       `yaml:"clear_min,omitempty"`    // threshold: default min
	ClearMax     *float64       `yaml:"clear_max,omitempty"`    // threshold: default max
	Limit        float64        `yaml:"limit,omitempty"`        // rate: per second (required)
	Threshold    float64        `yaml:"threshold,omitempty"`    // zscore, mad: |z| scoring 0.8; auto: novelty ratio to the recent peak scoring 0.8 (default 2)
	Alpha        float64        `yaml:"alpha,omitempty"`        // zscore: default 0.02
	Warmup       int            `yaml:"warmup,omitempty"`       // zscore: default 30
	Window       int            `yaml:"window,omitempty"`       // mad: default 64
	Epsilon      float64        `yaml:"epsilon,omitempty"`      // flatline: default 0
	Duration     time.Duration  `yaml:"duration,omitempty"`     // flatline: default 1h
	MinReadings  int            `yaml:"min_readings,omitempty"` // flatline: default 10
	RunFactor    float64        `yaml:"run_factor,omitempty"`   // flatline: default 0 (off)
	After        time.Duration  `yaml:"after,omitempty"`        // silence: default adaptive
	For          *time.Duration `yaml:"for,omitempty"`
	ResolveAfter *time.Duration `yaml:"resolve_after,omitempty"`

	unknown []badKey
}

// AlertConfig is the alert lifecycle of a rule's detectors. Zero values
// take the defaults: open 0.8, close 0.5, for 0s, resolve_after 0s (1m in
// the built-in default rule), repeat 0s (off), flap_count 6 (negative: off)
// within flap_window 10m.
type AlertConfig struct {
	Open         float64       `yaml:"open,omitempty"`
	Close        float64       `yaml:"close,omitempty"`
	For          time.Duration `yaml:"for,omitempty"`
	ResolveAfter time.Duration `yaml:"resolve_after,omitempty"`
	Repeat       time.Duration `yaml:"repeat,omitempty"`
	FlapCount    int           `yaml:"flap_count,omitempty"`
	FlapWindow   time.Duration `yaml:"flap_window,omitempty"`
}

// Filter and detector types with the keys each allows besides type.
var (
	filterKeys = map[string][]string{
		"calibrate": {"scale", "offset"},
		"clamp":     {"min", "max"},
		"median":    {"window"},
		"ewma":      {"alpha", "half_life"},
		"deadband":  {"delta", "heartbeat"},
	}
	detectorKeys = map[string][]string{
		"threshold": {"min", "max", "clear_min", "clear_max"},
		"rate":      {"limit"},
		"zscore":    {"threshold", "alpha", "warmup"},
		"mad":       {"threshold", "window"},
		"flatline":  {"epsilon", "duration", "min_readings", "run_factor"},
		"silence":   {"after"},
		"auto":      {"threshold"},
	}
	ruleKeys  = []string{"name", "match", "filters", "detectors", "alert"}
	matchKeys = []string{"sensor", "kind"}
	alertKeys = []string{"open", "close", "for", "resolve_after", "repeat", "flap_count", "flap_window"}
)

// badKey is a key that decoding found but no field takes.
type badKey struct {
	path string // relative to the element: "match.sensr", "windw"
	line int
	msg  string
}

// checkKeys returns the keys of mapping n not in allowed.
func checkKeys(n *yaml.Node, prefix string, allowed []string, msg string) []badKey {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var bad []badKey
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(allowed, k.Value) {
			bad = append(bad, badKey{prefix + k.Value, k.Line, msg})
		}
	}
	return bad
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// UnmarshalYAML decodes a rule and records unknown keys for Validate,
// which reports them with their full path.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error {
	type plain Rule
	if err := n.Decode((*plain)(r)); err != nil {
		return err
	}
	r.unknown = checkKeys(n, "", ruleKeys, "unknown key")
	if m := mapValue(n, "match"); m != nil {
		r.unknown = append(r.unknown, checkKeys(m, "match.", matchKeys, "unknown key")...)
	}
	if a := mapValue(n, "alert"); a != nil {
		r.unknown = append(r.unknown, checkKeys(a, "alert.", alertKeys, "unknown key")...)
	}
	return nil
}

// UnmarshalYAML decodes a filter and records keys its type does not take.
func (f *FilterConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain FilterConfig
	if err := n.Decode((*plain)(f)); err != nil {
		return err
	}
	f.unknown = typedKeys(n, f.Type, filterKeys)
	return nil
}

// UnmarshalYAML decodes a detector and records keys its type does not take.
func (d *DetectorConfig) UnmarshalYAML(n *yaml.Node) error {
	type plain DetectorConfig
	if err := n.Decode((*plain)(d)); err != nil {
		return err
	}
	d.unknown = typedKeys(n, d.Type, detectorKeys, "for", "resolve_after")
	return nil
}

func typedKeys(n *yaml.Node, typ string, byType map[string][]string, common ...string) []badKey {
	own, ok := byType[typ]
	if !ok {
		return nil // the type itself is reported
	}
	var all []string
	for _, ks := range byType {
		all = append(all, ks...)
	}
	allowed := append(append([]string{"type"}, common...), own...)
	var bad []badKey
	for _, k := range checkKeys(n, "", allowed, "") {
		if slices.Contains(all, k.path) {
			k.msg = "not a " + typ + " key"
		} else {
			k.msg = "unknown key"
		}
		bad = append(bad, k)
	}
	return bad
}

func typeNames(m map[string][]string) string {
	var ts []string
	for t := range m {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return strings.Join(ts, ", ")
}

func validateRules(rules []Rule, add addFunc) {
	names := map[string]int{}
	for i, r := range rules {
		at := fmt.Sprintf("rules[%d]", i)
		report := func(prefix string, bad []badKey) {
			for _, k := range bad {
				add(prefix+"."+k.path, "%s (line %d)", k.msg, k.line)
			}
		}
		report(at, r.unknown)
		if r.Name == "" {
			add(at+".name", "must not be empty")
		} else if j, dup := names[r.Name]; dup {
			add(at+".name", "%q is also the name of rules[%d]", r.Name, j)
		} else {
			names[r.Name] = i
		}
		if r.Match.Sensor != "" {
			if _, err := path.Match(r.Match.Sensor, ""); err != nil {
				add(at+".match.sensor", "bad glob %q: %v", r.Match.Sensor, err)
			}
		}
		if r.Name == "default" && (r.Match.Sensor != "" || r.Match.Kind != "") {
			add(at+".match", "the default rule applies to sensors no other rule matches: leave match empty")
		}
		if len(r.Filters) == 0 && len(r.Detectors) == 0 {
			add(at, "lists no filters and no detectors")
		}
		for j, f := range r.Filters {
			fat := fmt.Sprintf("%s.filters[%d]", at, j)
			report(fat, f.unknown)
			f.validate(fat, add)
		}
		silences := 0
		for j, d := range r.Detectors {
			dat := fmt.Sprintf("%s.detectors[%d]", at, j)
			report(dat, d.unknown)
			d.validate(dat, add)
			if d.Type == "silence" {
				if silences++; silences == 2 {
					add(dat, "at most one silence detector per rule")
				}
			}
		}
		r.Alert.validate(at+".alert", add)
	}
}

func (f *FilterConfig) validate(at string, add addFunc) {
	switch f.Type {
	case "":
		add(at+".type", "missing (one of %s)", typeNames(filterKeys))
	case "clamp":
		if f.Min == nil || f.Max == nil {
			add(at, "clamp needs min and max")
		} else if *f.Min >= *f.Max {
			add(at+".min", "%v must be below max %v", *f.Min, *f.Max)
		}
	case "median":
		if f.Window != 0 && (f.Window < 3 || f.Window > 31 || f.Window%2 == 0) {
			add(at+".window", "%d must be odd and between 3 and 31", f.Window)
		}
	case "ewma":
		if f.Alpha < 0 || f.Alpha > 1 {
			add(at+".alpha", "%v must be in (0, 1]", f.Alpha)
		}
		if f.HalfLife < 0 {
			add(at+".half_life", "must not be negative")
		}
	case "deadband":
		if f.Delta < 0 {
			add(at+".delta", "must not be negative")
		}
		if f.Heartbeat < 0 {
			add(at+".heartbeat", "must not be negative")
		}
	case "calibrate":
	default:
		add(at+".type", "unknown filter %q (one of %s)", f.Type, typeNames(filterKeys))
	}
}

func (d *DetectorConfig) validate(at string, add addFunc) {
	switch d.Type {
	case "":
		add(at+".type", "missing (one of %s)", typeNames(detectorKeys))
	case "threshold":
		if d.Min == nil && d.Max == nil {
			add(at, "threshold needs min or max")
		}
		if d.ClearMax != nil && (d.Max == nil || *d.ClearMax > *d.Max) {
			add(at+".clear_max", "needs max and must not be above it")
		}
		if d.ClearMin != nil && (d.Min == nil || *d.ClearMin < *d.Min) {
			add(at+".clear_min", "needs min and must not be below it")
		}
		if d.Min != nil && d.Max != nil && *d.Min >= *d.Max {
			add(at+".min", "%v must be below max %v", *d.Min, *d.Max)
		}
	case "rate":
		if !(d.Limit > 0) {
			add(at+".limit", "must be positive")
		}
	case "zscore":
		if d.Alpha < 0 || d.Alpha >= 1 {
			add(at+".alpha", "%v must be in (0, 1)", d.Alpha)
		}
		if d.Warmup < 0 || d.Warmup == 1 {
			add(at+".warmup", "%d must be at least 2", d.Warmup)
		}
	case "mad":
		if d.Window != 0 && (d.Window < 5 || d.Window > 1024) {
			add(at+".window", "%d must be between 5 and 1024", d.Window)
		}
	case "flatline":
		if d.Epsilon < 0 || d.Duration < 0 || d.MinReadings < 0 || d.RunFactor < 0 {
			add(at, "epsilon, duration, min_readings and run_factor must not be negative")
		}
	case "silence":
		if d.After < 0 {
			add(at+".after", "must not be negative")
		}
	case "auto":
	default:
		add(at+".type", "unknown detector %q (one of %s)", d.Type, typeNames(detectorKeys))
		return
	}
	if d.Threshold < 0 {
		add(at+".threshold", "must be positive")
	}
	if d.For != nil && *d.For < 0 {
		add(at+".for", "must not be negative")
	}
	if d.ResolveAfter != nil && *d.ResolveAfter < 0 {
		add(at+".resolve_after", "must not be negative")
	}
}

func (a *AlertConfig) validate(at string, add addFunc) {
	if a.Open < 0 || a.Open > 1 {
		add(at+".open", "%v must be in (0, 1]", a.Open)
	}
	open := a.Open
	if open == 0 {
		open = 0.8
	}
	if a.Close < 0 || a.Close > open {
		add(at+".close", "%v must be in (0, open %v]", a.Close, open)
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"for", a.For}, {"resolve_after", a.ResolveAfter}, {"repeat", a.Repeat}, {"flap_window", a.FlapWindow}} {
		if d.v < 0 {
			add(at+"."+d.k, "must not be negative")
		}
	}
	if a.FlapCount > 16 {
		add(at+".flap_count", "%d must be at most 16", a.FlapCount)
	}
}
