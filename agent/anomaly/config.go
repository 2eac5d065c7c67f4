package anomaly

import (
	"errors"
	"fmt"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/filter"
)

// RulesFromConfig converts the rules section of the configuration and
// checks each rule as New would, with messages that name the key path
// ("rules[0].detectors[1]: ..."). agent/config defines only the YAML
// types; the conversion lives here so config stays free of detector code.
func RulesFromConfig(rs []config.Rule) ([]Rule, error) {
	out := make([]Rule, 0, len(rs))
	var errs []error
	for i, c := range rs {
		r := Rule{
			Name:   c.Name,
			Sensor: c.Match.Sensor,
			Kind:   c.Match.Kind,
			Alert: AlertParams{
				Open: c.Alert.Open, Close: c.Alert.Close, For: c.Alert.For,
				ResolveAfter: c.Alert.ResolveAfter, Repeat: c.Alert.Repeat,
				FlapCount: c.Alert.FlapCount, FlapWindow: c.Alert.FlapWindow,
			},
		}
		for _, f := range c.Filters {
			s := filter.Spec{Type: f.Type, Scale: f.Scale, Offset: f.Offset, Window: f.Window,
				Alpha: f.Alpha, HalfLife: f.HalfLife, Delta: f.Delta, Heartbeat: f.Heartbeat}
			if f.Min != nil {
				s.Min = *f.Min
			}
			if f.Max != nil {
				s.Max = *f.Max
			}
			r.Filters = append(r.Filters, s)
		}
		for _, d := range c.Detectors {
			r.Detectors = append(r.Detectors, DetectorSpec{
				Type: d.Type, Min: d.Min, Max: d.Max, ClearMin: d.ClearMin, ClearMax: d.ClearMax,
				Limit: d.Limit, Threshold: d.Threshold, Alpha: d.Alpha, Warmup: d.Warmup,
				Window: d.Window, Epsilon: d.Epsilon, Duration: d.Duration,
				MinReadings: d.MinReadings, RunFactor: d.RunFactor, After: d.After,
				For: d.For, ResolveAfter: d.ResolveAfter,
			})
		}
		if _, err := compile(r); err != nil {
			errs = append(errs, fmt.Errorf("rules[%d].%w", i, err))
		}
		out = append(out, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
