package anomaly

import (
	"strings"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/config"
)

func TestRulesFromConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(`
rules:
  - name: boilers
    match: {sensor: "boiler-*", kind: temperature}
    filters: [{type: calibrate, scale: 1.0, offset: -0.5}, {type: median, window: 5}, {type: clamp, min: 0, max: 120}]
    detectors: [{type: threshold, max: 90, clear_max: 85, for: 30s}, {type: auto}]
    alert: {open: 0.8, close: 0.5, for: 0s, resolve_after: 1m, repeat: 0s}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := RulesFromConfig(cfg.Rules)
	if err != nil {
		t.Fatalf("RulesFromConfig = %v", err)
	}
	r := rs[0]
	if r.Name != "boilers" || r.Sensor != "boiler-*" || r.Kind != "temperature" || len(r.Filters) != 3 ||
		r.Filters[2].Min != 0 || r.Filters[2].Max != 120 || *r.Detectors[0].Max != 90 || *r.Detectors[0].For != 30*time.Second ||
		r.Alert.ResolveAfter != time.Minute {
		t.Errorf("rule = %+v", r)
	}
	e := mustEngine(t, Options{Rules: rs})
	var res agent.Result
	e.Process(agent.Reading{Sensor: "boiler-7", Kind: "temperature", Value: 50, Time: t0}, &res, nil)
	st, _ := e.Inspect("boiler-7")
	var names []string
	for _, d := range st.Detectors {
		names = append(names, d.Name)
	}
	if st.Rule != "boilers" || !eq(names, "threshold", "auto", "range") || res.Value != 49.5 {
		t.Errorf("state %+v value %v", st, res.Value)
	}

	// what config cannot check, conversion does, with the key path
	bad := []config.Rule{{Name: "x", Detectors: []config.DetectorConfig{{Type: "auto"}, {Type: "zscore", Alpha: 1}}}}
	if _, err := RulesFromConfig(bad); err == nil || !strings.Contains(err.Error(), "rules[0].detectors[1].zscore: alpha") {
		t.Errorf("RulesFromConfig(bad) = %v", err)
	}
}
