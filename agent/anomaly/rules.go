package anomaly

import (
	"fmt"
	"path"
	"strconv"
	"time"

	"github.com/edgeagent/edgeagent/agent/filter"
)

// Rule selects sensors and lists the filters and detectors they run, in
// order, and the alert lifecycle of its detectors.
type Rule struct {
	Name string
	// Sensor is a path.Match glob on the sensor id ("boiler-*"); Kind the
	// exact kind. Empty fields match anything.
	Sensor, Kind string
	Filters      []filter.Spec
	Detectors    []DetectorSpec
	Alert        AlertParams
}

// DefaultRuleName names the built-in rule for sensors no rule matches. A
// configured rule of that name (with an empty match) replaces it.
const DefaultRuleName = "default"

// DefaultRule is the rule of a sensor no configured rule matches: auto,
// flatline (stuck for an hour, 20 readings, and 3× longer than any stuck
// run seen before) and adaptive silence, with default alert parameters.
func DefaultRule() Rule {
	return Rule{
		Name: DefaultRuleName,
		Detectors: []DetectorSpec{
			{Type: TypeAuto},
			{Type: TypeFlatline, Duration: time.Hour, MinReadings: 20, RunFactor: 3},
			{Type: TypeSilence},
		},
		Alert: AlertParams{ResolveAfter: time.Minute},
	}
}

// Matches reports whether the rule selects the sensor.
func (r *Rule) Matches(sensor, kind string) bool {
	if r.Kind != "" && r.Kind != kind {
		return false
	}
	if r.Sensor == "" {
		return true
	}
	ok, _ := path.Match(r.Sensor, sensor)
	return ok
}

// compiled is a checked rule with its per-detector alert parameters.
type compiled struct {
	Rule
	names  []string      // detector names, unique within the rule
	params []AlertParams // per detector, overrides applied
	clamp  bool          // has a clamp filter: add the range detector
}

func compile(r Rule) (*compiled, error) {
	c := &compiled{Rule: r}
	if _, err := path.Match(r.Sensor, ""); err != nil {
		return nil, fmt.Errorf("match.sensor: bad glob %q: %w", r.Sensor, err)
	}
	base := r.Alert.withDefaults()
	if err := base.validate(); err != nil {
		return nil, err
	}
	for i, f := range r.Filters {
		if _, err := filter.New(f); err != nil {
			return nil, fmt.Errorf("filters[%d].%w", i, err)
		}
		if f.Type == filter.TypeClamp {
			c.clamp = true
		}
	}
	dets := r.Detectors
	if c.clamp {
		dets = append(dets[:len(dets):len(dets)], DetectorSpec{Type: TypeRange})
		c.Detectors = dets
	}
	seen := map[string]int{}
	silences := 0
	for i, d := range dets {
		if _, err := NewDetector(d); err != nil {
			return nil, fmt.Errorf("detectors[%d].%w", i, err)
		}
		if d.Type == TypeSilence {
			silences++
			if silences > 1 {
				return nil, fmt.Errorf("detectors[%d]: at most one silence detector per rule", i)
			}
		}
		seen[d.Type]++
		name := d.Type
		if n := seen[d.Type]; n > 1 {
			name += "-" + strconv.Itoa(n)
		}
		c.names = append(c.names, name)
		p := base
		if d.Type == TypeSilence {
			// silence's own After is its "for", and a reading ends it.
			p.For, p.ResolveAfter = 0, 0
		}
		if d.For != nil {
			p.For = *d.For
		}
		if d.ResolveAfter != nil {
			p.ResolveAfter = *d.ResolveAfter
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("detectors[%d].%w", i, err)
		}
		c.params = append(c.params, p)
	}
	return c, nil
}

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }
