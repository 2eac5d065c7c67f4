package agent

import "time"

// Stage is the per-sensor processing of one shard: filters, detectors and the
// alert state machine. The pipeline creates one Stage per shard and calls it
// only from that shard's goroutine, so implementations keep per-sensor state
// without locks.
type Stage interface {
	// Process runs r through the sensor's filters and detectors, fills res,
	// and returns alerts with any lifecycle transitions appended.
	Process(r Reading, res *Result, alerts []Alert) []Alert
	// Tick advances gateway-clock timers (the silence detector) to now and
	// returns alerts with any transitions appended.
	Tick(now time.Time, alerts []Alert) []Alert
}

// SlotStage is a Stage that keeps a sensor's state in a slot the shard holds
// beside its own summary of the sensor, so a reading costs one lookup by
// sensor id instead of one in the shard and one in the stage. The shard passes
// the same slot, empty at first, to every ProcessSlot of one sensor; the stage
// must check that what it finds there is still its current state.
type SlotStage interface {
	Stage
	ProcessSlot(r Reading, slot *any, res *Result, alerts []Alert) []Alert
}

// Snapshotter is implemented by a Stage whose state survives restarts.
type Snapshotter interface {
	// Snapshot calls save with the encoded state of each sensor. The state
	// is valid only during the call: save must copy what it keeps.
	Snapshot(save func(sensor string, state []byte))
	// Restore loads a sensor's state written by Snapshot.
	Restore(sensor string, state []byte) error
}

// Store persists what the pipeline produced. Implementations must be safe for
// concurrent use (shards call it in parallel), must copy rs and as (callers
// reuse them), and must call Done on every reading's Commit once the reading
// is durable or has failed. Write may block to give backpressure.
type Store interface {
	Write(rs []Result, as []Alert)
}

// Observer sees every result and every alert, after Store.Write. It must skip
// results marked Suppressed (deadband) and must never block (the live
// WebSocket hub drops slow viewers instead).
type Observer interface {
	Observe(rs []Result, as []Alert)
}
