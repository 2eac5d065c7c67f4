package config

import (
	"fmt"
	"path"
)

// Rule selects sensors and lists the filters and detectors they run. The
// first rule whose match fits a sensor wins; sensors no rule matches run the
// built-in default rule.
type Rule struct {
	Name      string           `yaml:"name"`
	Match     Match            `yaml:"match"`
	Filters   []map[string]any `yaml:"filters"`
	Detectors []map[string]any `yaml:"detectors"`
}

// Match selects sensors by id glob and/or kind. Empty fields match anything.
type Match struct {
	Sensor string `yaml:"sensor"`
	Kind   string `yaml:"kind"`
}

func validateRules(rules []Rule, add addFunc) {
	for i, r := range rules {
		if r.Match.Sensor != "" {
			if _, err := path.Match(r.Match.Sensor, ""); err != nil {
				add(fmt.Sprintf("rules[%d].match.sensor", i), "bad glob %q: %v", r.Match.Sensor, err)
			}
		}
	}
}
