// Package agent holds edgeagent's domain types (Reading, Result, Alert), the
// sentinels shared by every package, and the Pipeline that moves readings from
// ingest through the per-sensor stages to storage and observers.
package agent

import (
	"errors"
	"time"
)

// Flags mark facts about a reading that later stages must know.
type Flags uint16

const (
	// FlagRestamped: the reading carried a time from before the clock was set
	// (an RTC-less boot in 1970) and was re-stamped with its arrival time.
	FlagRestamped Flags = 1 << iota
	// FlagOutOfRange: a clamp filter found the value outside its physical range.
	FlagOutOfRange
	// FlagRetained: the broker replayed a retained message; the value is
	// "last known", not a fresh reading.
	FlagRetained
	// FlagDeviceOffline: the device's liveness topic says it is offline.
	FlagDeviceOffline
	// FlagSuspect: the source reported a gap or inconsistency (Sparkplug seq).
	FlagSuspect
)

// Reading is one numeric sample of one sensor, as decoded by ingest.
type Reading struct {
	Sensor  string    // unique id, e.g. "boiler-1" or "kitchen/temperature"
	Kind    string    // quantity, e.g. "temperature"; may be empty
	Unit    string    // e.g. "°C"; may be empty
	Value   float64   // always finite
	Time    time.Time // reading time: from the payload, else arrival
	Arrived time.Time // when the agent received it
	Flags   Flags

	// Commit, when set, is completed once this reading is durable (or failed).
	// The publisher of a QoS 1 message waits on it before acknowledging.
	Commit *Commit
}

// Band is the range a detector expected the value to lie in.
type Band struct {
	Lo, Hi float64
}

// Result is a reading after the per-sensor stages: filtered value, anomaly
// score and the expected band.
type Result struct {
	Reading
	Raw      float64 // the value before filters
	Score    float64 // the highest detector score, in [0,1]
	Detector string  // the detector that produced Score ("" when none scored)
	Band     Band    // expected range; zero when no detector has a baseline
	// Suppressed is true when a filter (deadband) kept the reading from being
	// emitted downstream: storage keeps it in rollups, observers skip it.
	Suppressed bool
}

// AlertState is a step of the alert lifecycle that leaves the agent.
type AlertState string

const (
	AlertPending  AlertState = "pending"
	AlertFiring   AlertState = "firing"
	AlertResolved AlertState = "resolved"
	AlertFlapping AlertState = "flapping"
)

// Baseline holds the statistics a detector compared the value against.
type Baseline struct {
	Mean   float64 `json:"mean"`
	StdDev float64 `json:"stddev"`
	Lo     float64 `json:"lo"`
	Hi     float64 `json:"hi"`
	N      int64   `json:"n"`
}

// Alert is one transition of an incident on one sensor and detector. The
// firing, resolved and flapping transitions of one incident share an ID
// (a UUIDv7), so receivers can drop duplicates.
type Alert struct {
	ID         string     `json:"id"`
	Gateway    string     `json:"gateway"`
	Sensor     string     `json:"sensor"`
	Kind       string     `json:"kind,omitempty"`
	Unit       string     `json:"unit,omitempty"`
	Detector   string     `json:"detector"`
	State      AlertState `json:"state"`
	Reason     string     `json:"reason"`
	Score      float64    `json:"score"`       // peak score of the incident
	Value      float64    `json:"value"`       // latest value
	FirstValue float64    `json:"first_value"` // value when the incident opened
	Baseline   Baseline   `json:"baseline"`
	StartedAt  time.Time  `json:"started_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	ResolvedAt time.Time  `json:"resolved_at,omitzero"`
}

// Sentinel errors shared across packages. Wrap them with where it happened.
var (
	ErrNotFound       = errors.New("not found")
	ErrClosed         = errors.New("closed")
	ErrTooManySensors = errors.New("too many sensors")
	ErrStorageFailed  = errors.New("storage failed")
	ErrInvalidReading = errors.New("invalid reading")
	ErrCommitTimedOut = errors.New("commit timed out")
)
