package anomaly

import (
	"reflect"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// SetRules replaces the engine's rules, as a config reload does, and appends
// the alerts that follows from it. A sensor whose matching rule is unchanged
// keeps its state and open incidents; any other sensor starts fresh under its
// new rule on its next reading, and its open incidents are resolved now (the
// reason says so), so no alert is left open upstream. On error (a rule does
// not compile) nothing changes.
func (e *Engine) SetRules(rules []Rule, now time.Time, alerts []agent.Alert) ([]agent.Alert, error) {
	next, err := New(Options{Rules: rules})
	if err != nil {
		return alerts, err
	}
	e.rules = next.rules
	t := now.UnixNano()
	for id, s := range e.sensors {
		if r := e.rule(id, s.kind); reflect.DeepEqual(r.Rule, s.rule.Rule) {
			continue // same rule: keep learning where it was
		}
		for i := range s.dets {
			sl := &s.dets[i]
			if st := sl.lc.st; st == stFiring || st == stFlapping {
				alerts = e.emit(alerts, s, sl, evResolved, t)
				alerts[len(alerts)-1].Reason += " (rule changed by a config reload)"
			}
		}
		s.dropped = true // a slot or timer-wheel entry of it is stale
		delete(e.sensors, id)
	}
	return alerts, nil
}
