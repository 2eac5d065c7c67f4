// Package anomaly holds edgeagent's detectors (threshold, rate, zscore,
// mad, flatline, silence and the default auto ensemble), the alert
// lifecycle and the Engine: the agent.Stage of one pipeline shard.
//
// Everything here is pure and single-threaded: time arrives with the
// reading (reading time for detectors, arrival time and Tick for silence),
// and an Engine is owned by one shard goroutine, so there are no locks.
// Per reading the Engine does a map lookup, runs the sensor's filters and
// detectors and steps each detector's lifecycle; it allocates only when a
// sensor is first seen and when an alert is emitted.
package anomaly

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/filter"
)

// Options configures an Engine.
type Options struct {
	// Rules are tried in order; the first whose match fits a sensor wins.
	// Sensors no rule matches run DefaultRule (or the configured rule
	// named "default").
	Rules []Rule
	// Gateway is copied into every alert.
	Gateway string
	// Now is the gateway clock, used when a reading has no arrival time
	// (nil: time.Now).
	Now func() time.Time
	// Metrics is shared by all shards' engines (nil: none).
	Metrics *Metrics
	// Devices is the device liveness table shared by all shards' engines
	// (see device.go). Nil: the engine keeps its own, which is enough with
	// one shard only.
	Devices *Devices
}

// Engine runs the rules' filters, detectors and alert lifecycles for the
// sensors of one shard. It implements agent.SlotStage and agent.Snapshotter.
// All methods must be called from the one goroutine that owns the shard.
type Engine struct {
	gateway string
	now     func() time.Time
	metrics *Metrics
	rules   []*compiled // the default rule last
	sensors map[string]*sensor
	wheel   wheel
	buf     []byte // scratch for reasons
	devices *Devices
	devs    map[string]*devIncident // open device_offline incidents of this shard
}

var (
	_ agent.SlotStage   = (*Engine)(nil)
	_ agent.Snapshotter = (*Engine)(nil)
)

// sane is the earliest reading time believed: before it the sensor's
// clock was not set (an RTC-less boot in 1970).
var sane = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

type detKind uint8

const (
	dkValue detKind = iota
	dkSilence
	dkRange
)

type slot struct {
	det   Detector
	kind  detKind
	name  string
	p     *AlertParams
	score float64
	lc    lifecycle
}

type sensor struct {
	id, kind, unit string
	rule           *compiled
	filters        []filter.Filter
	dets           []slot
	silence        *silenceDet
	silenceSlot    *slot
	lastT          int64
	lastV, lastRaw float64

	next    *sensor // timer wheel list
	inWheel bool
	dropped bool // no longer in Engine.sensors: a slot or wheel entry holding it is stale
}

// New checks the rules and returns an Engine with no sensors.
func New(opts Options) (*Engine, error) {
	e := &Engine{
		gateway: opts.Gateway,
		now:     opts.Now,
		metrics: opts.Metrics,
		sensors: make(map[string]*sensor),
		devices: opts.Devices,
	}
	if e.devices == nil {
		e.devices = NewDevices()
	}
	if e.now == nil {
		e.now = time.Now
	}
	var def *compiled
	for i, r := range opts.Rules {
		c, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d] (%s): %w", i, r.Name, err)
		}
		if r.Name == DefaultRuleName {
			if r.Sensor != "" || r.Kind != "" {
				return nil, fmt.Errorf("rules[%d] (default): match: must be empty", i)
			}
			def = c
			continue
		}
		e.rules = append(e.rules, c)
	}
	if def == nil {
		var err error
		if def, err = compile(DefaultRule()); err != nil {
			return nil, fmt.Errorf("default rule: %w", err) // a bug
		}
	}
	e.rules = append(e.rules, def)
	return e, nil
}

// rule returns the first rule matching the sensor; the default never fails.
func (e *Engine) rule(id, kind string) *compiled {
	for _, r := range e.rules[:len(e.rules)-1] {
		if r.Matches(id, kind) {
			return r
		}
	}
	return e.rules[len(e.rules)-1]
}

func (e *Engine) newSensor(id, kind, unit string, r *compiled) *sensor {
	s := &sensor{id: strings.Clone(id), kind: strings.Clone(kind), unit: strings.Clone(unit), rule: r}
	for _, f := range r.Filters {
		fl, _ := filter.New(f) // checked in compile
		s.filters = append(s.filters, fl)
	}
	s.dets = make([]slot, len(r.Detectors))
	for i, d := range r.Detectors {
		det, _ := NewDetector(d) // checked in compile
		sl := &s.dets[i]
		sl.det, sl.name, sl.p = det, r.names[i], &r.params[i]
		switch d := det.(type) {
		case *silenceDet:
			sl.kind, s.silence, s.silenceSlot = dkSilence, d, sl
		case *rangeDet:
			sl.kind = dkRange
		}
	}
	return s
}

// Process runs r through its sensor's filters and detectors, fills res and
// appends any alert transitions. It allocates only for a new sensor or an
// emitted alert. A reading a deadband filter suppresses (res.Suppressed)
// still runs through the detectors; only its emission downstream stops.
// A reading with no Arrived time gets Options.Now; one stamped before 2001
// while Arrived is sane is re-stamped with Arrived (agent.FlagRestamped).
func (e *Engine) Process(r agent.Reading, res *agent.Result, alerts []agent.Alert) []agent.Alert {
	var held any
	return e.ProcessSlot(r, &held, res, alerts)
}

// ProcessSlot is Process with the sensor's state kept in *held as well, so
// the next reading of the sensor needs no lookup (agent.SlotStage).
func (e *Engine) ProcessSlot(r agent.Reading, held *any, res *agent.Result, alerts []agent.Alert) []agent.Alert {
	if r.Arrived.IsZero() {
		r.Arrived = e.now()
	}
	if r.Time.Before(sane) && !r.Arrived.Before(sane) {
		r.Time = r.Arrived
		r.Flags |= agent.FlagRestamped
	}
	if r.Kind == KindLiveness {
		return e.liveness(r, res, alerts)
	}
	s, _ := (*held).(*sensor)
	if s == nil || s.dropped {
		if s = e.sensors[r.Sensor]; s == nil {
			s = e.newSensor(r.Sensor, r.Kind, r.Unit, e.rule(r.Sensor, r.Kind))
			e.sensors[s.id] = s
		}
		*held = s
	}
	t, arr := r.Time.UnixNano(), r.Arrived.UnixNano()

	smp := filter.Sample{Value: r.Value, Time: t, Flags: r.Flags}
	for i := range s.filters {
		s.filters[i].Apply(&smp)
	}
	*res = agent.Result{Reading: r, Raw: r.Value, Suppressed: smp.Suppressed}
	res.Value, res.Flags = smp.Value, smp.Flags
	if t > s.lastT {
		s.lastT = t
	}
	s.lastV, s.lastRaw = smp.Value, r.Value

	var top *slot
	for i := range s.dets {
		sl := &s.dets[i]
		lt := t
		switch sl.kind {
		case dkSilence:
			lt = arr
		case dkRange:
			sl.det.(*rangeDet).out = smp.Flags&agent.FlagOutOfRange != 0
		}
		sl.score = sl.det.Update(lt, smp.Value)
		if top == nil || sl.score > top.score {
			top = sl
		}
		if ev := sl.lc.step(lt, sl.score, smp.Value, sl.p); ev != evNone {
			alerts = e.emit(alerts, s, sl, ev, lt)
		}
	}
	if top != nil {
		res.Score = top.score
		if top.score > 0 {
			res.Detector = top.name
		}
		b, ok := top.det.Band()
		for i := 0; !ok && i < len(s.dets); i++ {
			b, ok = s.dets[i].det.Band()
		}
		res.Band = b
	}
	if s.silence != nil && !s.inWheel {
		if dl := s.silence.deadline(); dl != 0 {
			e.wheel.add(s, dl, arr)
		}
	}
	return alerts
}

// Tick advances the silence timers to the gateway time now and appends the
// alerts of sensors that fell silent. Call it about once a second.
func (e *Engine) Tick(now time.Time, alerts []agent.Alert) []agent.Alert {
	n := now.UnixNano()
	for s := e.wheel.due(n); s != nil; s = e.wheel.due(n) {
		if s.dropped {
			continue // by SetRules or Restore
		}
		sl := s.silenceSlot
		dl := s.silence.deadline()
		if dl == 0 {
			continue // learning; Process re-adds it
		}
		if n < dl {
			e.wheel.add(s, dl, n) // a reading moved the deadline: lazy reschedule
			continue
		}
		if until, hold := e.holdSilence(s, n); hold && sl.lc.st != stFiring {
			e.wheel.add(s, until, n) // its device is offline or just came back
			continue
		}
		sl.score = s.silence.check(n)
		if ev := sl.lc.step(n, sl.score, s.lastV, sl.p); ev != evNone {
			alerts = e.emit(alerts, s, sl, ev, n)
		}
		switch {
		case sl.lc.st == stPending:
			e.wheel.add(s, n+max(int64(sl.p.For)-(n-sl.lc.since), int64(time.Second)), n)
		case sl.lc.st == stFiring && sl.p.Repeat > 0:
			e.wheel.add(s, sl.lc.lastSent+int64(sl.p.Repeat), n)
		}
	}
	e.wheel.finish(n)
	return alerts
}

// emit appends the alert of a lifecycle transition.
func (e *Engine) emit(alerts []agent.Alert, s *sensor, sl *slot, ev event, t int64) []agent.Alert {
	e.metrics.count(ev)
	l := &sl.lc
	if ev == evFiring || ev == evFlapping {
		l.id = uuid.Must(uuid.NewV7())
		l.base = finiteBaseline(sl.det.Baseline())
		e.buf = sl.det.AppendReason(e.buf[:0])
		if ev == evFlapping {
			e.buf = append(e.buf, " (flapping: "...)
			e.buf = fmt.Appendf(e.buf, "%d transitions within %v)", l.recent(t, int64(sl.p.FlapWindow)), sl.p.FlapWindow)
		}
		l.reason = string(e.buf)
	}
	a := agent.Alert{
		ID:         uuid.UUID(l.id).String(),
		Gateway:    e.gateway,
		Sensor:     s.id,
		Kind:       s.kind,
		Unit:       s.unit,
		Detector:   sl.name,
		Reason:     l.reason,
		Score:      l.peak,
		Value:      l.last,
		FirstValue: l.first,
		Baseline:   l.base,
		StartedAt:  time.Unix(0, l.since).UTC(),
		UpdatedAt:  time.Unix(0, t).UTC(),
	}
	switch ev {
	case evFiring, evRepeat:
		a.State = agent.AlertFiring
	case evFlapping:
		a.State = agent.AlertFlapping
	case evResolved, evFlapResolved:
		a.State = agent.AlertResolved
		a.ResolvedAt = a.UpdatedAt
		e.buf = append(e.buf[:0], l.reason...)
		e.buf = append(e.buf, "; now "...)
		e.buf = sl.det.AppendReason(e.buf)
		a.Reason = string(e.buf)
	}
	return append(alerts, a)
}

// finiteBaseline keeps an alert JSON-encodable whatever the statistics did
// near ±MaxFloat64.
func finiteBaseline(b agent.Baseline) agent.Baseline {
	for _, x := range [...]*float64{&b.Mean, &b.StdDev, &b.Lo, &b.Hi} {
		switch {
		case math.IsNaN(*x):
			*x = 0
		case math.IsInf(*x, 1):
			*x = math.MaxFloat64
		case math.IsInf(*x, -1):
			*x = -math.MaxFloat64
		}
	}
	return b
}

// SensorState is a copy of one sensor's detector states, for the API.
type SensorState struct {
	Sensor, Kind, Unit string
	Rule               string
	LastTime           time.Time // latest reading time
	Value, Raw         float64   // latest filtered and raw value
	Detectors          []DetectorState
}

// DetectorState is one detector's current score and alert state.
type DetectorState struct {
	Name     string
	Type     string
	Score    float64
	Band     agent.Band
	HasBand  bool
	Baseline agent.Baseline
	Reason   string
	// State is ok, pending, firing or flapping; AlertID and Since are set
	// while it is not ok (Since: when the score first reached Open).
	State   string
	AlertID string
	Since   time.Time
}

// Inspect returns a copy of the sensor's state. Like every Engine method,
// it must be called from the shard's goroutine (e.g. through a request
// the shard serves between readings).
func (e *Engine) Inspect(sensor string) (SensorState, bool) {
	s := e.sensors[sensor]
	if s == nil {
		return SensorState{}, false
	}
	st := SensorState{Sensor: s.id, Kind: s.kind, Unit: s.unit, Rule: s.rule.Name,
		LastTime: time.Unix(0, s.lastT).UTC(), Value: s.lastV, Raw: s.lastRaw}
	for i := range s.dets {
		sl := &s.dets[i]
		b, ok := sl.det.Band()
		ds := DetectorState{Name: sl.name, Type: sl.det.Type(), Score: sl.score, Band: b, HasBand: ok,
			Baseline: sl.det.Baseline(), Reason: string(sl.det.AppendReason(nil)), State: sl.lc.st.String()}
		if sl.lc.st != stOK {
			ds.Since = time.Unix(0, sl.lc.since).UTC()
			if sl.lc.st != stPending {
				ds.AlertID = uuid.UUID(sl.lc.id).String()
			}
		}
		st.Detectors = append(st.Detectors, ds)
	}
	return st, true
}

// Sensors returns the number of sensors with state.
func (e *Engine) Sensors() int { return len(e.sensors) }

// snapVersion is the snapshot layout; a state of another version is not
// restored (the sensor learns afresh). 2: auto keeps its sustain mean.
const snapVersion = 2

// Snapshot calls save with the binary state of each sensor. The bytes are
// only valid during the call.
func (e *Engine) Snapshot(save func(sensor string, state []byte)) {
	var b []byte
	for _, s := range e.sensors {
		b = e.encode(b[:0], s)
		save(s.id, b)
	}
}

func (e *Engine) encode(b []byte, s *sensor) []byte {
	b = append(b, snapVersion)
	b = putS(b, s.rule.Name)
	b = putS(b, s.kind)
	b = putS(b, s.unit)
	b = putI(b, s.lastT)
	b = putF(b, s.lastV)
	b = putF(b, s.lastRaw)
	b = putU(b, uint64(len(s.filters)))
	for i := range s.filters {
		b = s.filters[i].AppendState(b)
	}
	b = putU(b, uint64(len(s.dets)))
	for i := range s.dets {
		sl := &s.dets[i]
		b = putS(b, sl.name)
		b = sl.det.AppendState(b)
		b = sl.lc.appendState(b)
	}
	return b
}

// Restore loads a sensor's state written by Snapshot. It fails, leaving
// the sensor to start fresh, when the rule that now matches the sensor is
// not the one the state was written by or its filters or detectors differ.
func (e *Engine) Restore(id string, state []byte) error {
	s, err := e.decode(id, state)
	if err != nil {
		return fmt.Errorf("sensor %q: %w", id, err)
	}
	if old := e.sensors[id]; old != nil {
		old.dropped = true
		for i := range old.dets {
			if st := old.dets[i].lc.st; st == stFiring || st == stFlapping {
				e.metrics.count(evResolved) // keep the open gauge right
			}
		}
	}
	e.sensors[s.id] = s
	for i := range s.dets {
		if st := s.dets[i].lc.st; st == stFiring || st == stFlapping {
			e.metrics.restored()
		}
	}
	if s.silence != nil && !s.inWheel {
		if dl := s.silence.deadline(); dl != 0 {
			e.wheel.add(s, dl, e.now().UnixNano())
		}
	}
	return nil
}

func (e *Engine) decode(id string, state []byte) (*sensor, error) {
	if len(state) == 0 || state[0] != snapVersion {
		return nil, fmt.Errorf("%w: version", ErrBadState)
	}
	r := dec{b: state[1:]}
	name, kind, unit := r.s(), r.s(), r.s()
	if r.err != nil {
		return nil, r.err
	}
	rule := e.rule(id, kind)
	if rule.Name != name {
		return nil, fmt.Errorf("%w: written by rule %q, now matches %q", ErrBadState, name, rule.Name)
	}
	s := e.newSensor(id, kind, unit, rule)
	s.lastT, s.lastV, s.lastRaw = r.i(), r.f(), r.f()
	if n := r.u(); r.err == nil && n != uint64(len(s.filters)) {
		return nil, fmt.Errorf("%w: %d filters, rule has %d", ErrBadState, n, len(s.filters))
	}
	for i := range s.filters {
		if r.err != nil {
			break
		}
		r.b, r.err = s.filters[i].LoadState(r.b)
	}
	if n := r.u(); r.err == nil && n != uint64(len(s.dets)) {
		return nil, fmt.Errorf("%w: %d detectors, rule has %d", ErrBadState, n, len(s.dets))
	}
	for i := range s.dets {
		sl := &s.dets[i]
		if n := r.s(); r.err == nil && n != sl.name {
			return nil, fmt.Errorf("%w: detector %d is %q, rule has %q", ErrBadState, i, n, sl.name)
		}
		if r.err != nil {
			break
		}
		r.b, r.err = sl.det.LoadState(r.b)
		if r.err != nil {
			break
		}
		sl.lc.loadState(&r)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes", ErrBadState, len(r.b))
	}
	if r.err != nil {
		if !errors.Is(r.err, ErrBadState) && !errors.Is(r.err, filter.ErrBadState) {
			r.err = fmt.Errorf("%w: %w", ErrBadState, r.err)
		}
		return nil, r.err
	}
	return s, nil
}
