// Package sim simulates gateway sensors: realistic readings (daily cycles,
// machines switching on and off, noise) with injected anomalies (spikes,
// stuck values, drifts), published over MQTT to any broker.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Anomaly names an injected fault.
type Anomaly string

const (
	None    Anomaly = ""
	Spike   Anomaly = "spike"
	Stuck   Anomaly = "stuck"
	Drift   Anomaly = "drift"
	Silence Anomaly = "silence" // the sensor stops publishing

	LevelShift  Anomaly = "level_shift"  // the level jumps and stays
	NoiseBurst  Anomaly = "noise_burst"  // the noise grows several-fold
	Dropout     Anomaly = "dropout"      // the sensor reads zero
	Saturation  Anomaly = "saturation"   // the reading is pegged at full scale
	PatternLoss Anomaly = "pattern_loss" // the daily cycle and machine states vanish
)

// profile is the physics of one kind of sensor.
type profile struct {
	kind, unit       string
	base, daily, std float64 // mean, amplitude of the daily cycle, noise σ
	onOff            bool    // a machine that switches between two levels
	onLevel          float64
}

var profiles = []profile{
	{kind: "temperature", unit: "°C", base: 21, daily: 3, std: 0.15},
	{kind: "humidity", unit: "%", base: 45, daily: -8, std: 0.6},
	{kind: "pressure", unit: "hPa", base: 1013, daily: 1.5, std: 0.2},
	{kind: "power", unit: "W", base: 4, std: 1.5, onOff: true, onLevel: 850},
	{kind: "vibration", unit: "mm/s", base: 0.4, std: 0.05, onOff: true, onLevel: 3.2},
}

// Sensor produces one sensor's readings. It is not safe for concurrent use.
type Sensor struct {
	ID   string
	Kind string
	Unit string

	p        profile
	rng      *rand.Rand
	phase    float64
	on       bool
	nextFlip time.Time
	anomaly  Anomaly
	until    time.Time
	stuckAt  float64
	drift    float64
	shift    float64
	last     float64
	// AnomalyRate is the chance per reading that an anomaly starts. Zero: none.
	AnomalyRate float64
}

// NewSensor returns sensor number i of a fleet, deterministic for a seed.
func NewSensor(i int, seed uint64) *Sensor {
	p := profiles[i%len(profiles)]
	rng := rand.New(rand.NewPCG(seed, uint64(i)*0x9e3779b97f4a7c15+1))
	return &Sensor{
		ID:    fmt.Sprintf("sim-%s-%03d", p.kind, i),
		Kind:  p.kind,
		Unit:  p.unit,
		p:     p,
		rng:   rng,
		phase: rng.Float64() * 2 * math.Pi / 8,
	}
}

// Inject starts anomaly a at t for d.
func (s *Sensor) Inject(a Anomaly, t time.Time, d time.Duration) {
	s.anomaly, s.until = a, t.Add(d)
	s.stuckAt, s.drift = s.last, 0
	if a == LevelShift {
		s.shift = s.spikeSize() / 2
	}
}

// Active reports the anomaly in force at t.
func (s *Sensor) Active(t time.Time) Anomaly {
	if s.anomaly != None && !t.Before(s.until) {
		s.anomaly = None
	}
	return s.anomaly
}

// Next returns the value at t and whether the sensor publishes it (false
// while it is silent).
func (s *Sensor) Next(t time.Time) (float64, bool) {
	if s.AnomalyRate > 0 && s.Active(t) == None && s.rng.Float64() < s.AnomalyRate {
		kinds := []Anomaly{Spike, Stuck, Drift, Silence}
		a := kinds[s.rng.IntN(len(kinds))]
		d := map[Anomaly]time.Duration{Spike: time.Second, Stuck: 5 * time.Minute, Drift: 10 * time.Minute, Silence: 3 * time.Minute}[a]
		s.Inject(a, t, d)
	}
	v := s.normal(t)
	switch s.Active(t) {
	case Spike:
		v += s.spikeSize()
	case Stuck:
		v = s.stuckAt
	case Drift:
		s.drift += s.p.std * 0.05
		v += s.drift
	case Silence:
		return v, false
	case LevelShift:
		v += s.shift
	case NoiseBurst:
		v += s.rng.NormFloat64() * (5*s.p.std + 0.05*math.Abs(s.p.daily) + 0.02*s.p.onLevel)
	case Dropout:
		v = 0
	case Saturation:
		v = s.p.base + 2*math.Abs(s.p.daily) + 1.2*s.p.onLevel + 20*s.p.std
	case PatternLoss:
		v = s.p.base + s.rng.NormFloat64()*s.p.std
	}
	s.last = v
	return v, true
}

func (s *Sensor) spikeSize() float64 {
	size := 12*s.p.std + 0.2*math.Abs(s.p.daily) + 0.1*s.p.onLevel
	if s.rng.IntN(2) == 0 {
		return -size
	}
	return size
}

// normal is the healthy signal: daily cycle or machine state, plus noise.
func (s *Sensor) normal(t time.Time) float64 {
	day := float64(t.Unix()%86400) / 86400
	v := s.p.base + s.p.daily*math.Sin(2*math.Pi*day-math.Pi/2+s.phase)
	if s.p.onOff {
		if t.After(s.nextFlip) {
			if !s.nextFlip.IsZero() {
				s.on = !s.on
			}
			s.nextFlip = t.Add(time.Duration(5+s.rng.IntN(25)) * time.Minute)
		}
		if s.on {
			v += s.p.onLevel
		}
	}
	return v + s.rng.NormFloat64()*s.p.std
}
