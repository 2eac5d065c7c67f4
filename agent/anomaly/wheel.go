package anomaly

import "time"

// wheel is a hashed timing wheel of one-second slots for the silence
// deadlines of one shard. A sensor sits in at most one slot; when a reading
// moves its deadline it stays where it is and is rescheduled lazily when
// its slot comes due, so Process costs O(1) and Tick O(due sensors + slots
// passed). Deadlines beyond the wheel's span are parked in its last slot
// and re-checked. If the gateway clock steps back, deadlines fire late by
// the step; a step forward fires everything due at the next Tick.
type wheel struct {
	slots [wheelSlots]*sensor
	cur   int64 // last tick processed (Unix seconds); 0 before the first Tick
	pend  *sensor
	upto  int64 // the tick due() is draining up to
	k     int64 // the tick due() is draining
}

const (
	wheelSlots = 1024
	wheelRes   = int64(time.Second)
)

// add schedules s for deadline; now is the gateway time (Unix ns).
func (w *wheel) add(s *sensor, deadline, now int64) {
	if w.cur == 0 {
		w.cur = now/wheelRes - 1
	}
	k := deadline / wheelRes
	if deadline%wheelRes != 0 {
		k++ // due at the first tick at or after the deadline
	}
	k = min(max(k, w.cur+1), w.cur+wheelSlots-1)
	i := k % wheelSlots
	if i < 0 {
		i += wheelSlots
	}
	s.next, s.inWheel = w.slots[i], true
	w.slots[i] = s
}

// due returns the next sensor whose slot is due at time now (Unix ns),
// removing it from the wheel, or nil when none is left; then call finish.
func (w *wheel) due(now int64) *sensor {
	target := now / wheelRes
	if w.cur == 0 {
		w.cur = target - 1
	}
	if w.upto != target {
		w.upto, w.k = target, w.cur+1
		if target-w.cur > wheelSlots {
			w.k = target - wheelSlots + 1 // a long jump: visit every slot once
		}
	}
	for w.pend == nil && w.k <= target {
		i := w.k % wheelSlots
		if i < 0 {
			i += wheelSlots
		}
		w.pend, w.slots[i] = w.slots[i], nil
		w.k++
	}
	s := w.pend
	if s == nil {
		return nil
	}
	w.pend, s.next, s.inWheel = s.next, nil, false
	return s
}

// finish records that every slot up to now has been processed.
func (w *wheel) finish(now int64) {
	if t := now / wheelRes; t > w.cur {
		w.cur = t
	}
}
