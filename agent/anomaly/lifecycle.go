package anomaly

import (
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// AlertParams configures the alert lifecycle of a rule: per sensor and
// detector, ok → pending → firing → resolved (→ ok), with flapping in
// place of a storm. Durations count in reading time (gateway time for
// silence). Zero values take the defaults in withDefaults.
type AlertParams struct {
	// Open is the score at or above which an incident opens (zero: 0.8);
	// Close the score below which it may resolve (zero: 0.5, or Open when
	// Open is below 0.5). Close ≤ Open gives hysteresis.
	Open, Close float64
	// For is how long the score must stay at or above Close, after first
	// reaching Open, before the alert fires (zero: at once). A reading
	// scoring below Close while pending resets it silently.
	For time.Duration
	// ResolveAfter is how long the score must stay below Close before a
	// firing alert resolves (zero: the first reading below Close).
	ResolveAfter time.Duration
	// Repeat re-emits a firing alert (same ID) this often while it stays
	// firing (zero: never).
	Repeat time.Duration
	// FlapCount transitions (firing or resolved) within FlapWindow make
	// the next firing a single "flapping" alert instead (zero: 6, negative:
	// no flap detection, at most 16). Flapping ends, with a "resolved"
	// alert of the same ID, once the detector has been ok with no
	// transition for FlapWindow (zero: 10m).
	FlapCount  int
	FlapWindow time.Duration
}

const maxFlapCount = 16

func (p AlertParams) withDefaults() AlertParams {
	if p.Open == 0 {
		p.Open = 0.8
	}
	if p.Close == 0 {
		p.Close = min(0.5, p.Open)
	}
	if p.FlapCount == 0 {
		p.FlapCount = 6
	}
	if p.FlapWindow == 0 {
		p.FlapWindow = 10 * time.Minute
	}
	return p
}

func (p AlertParams) validate() error {
	switch {
	case !(p.Open > 0 && p.Open <= 1):
		return errf("alert.open: %v must be in (0, 1]", p.Open)
	case !(p.Close > 0 && p.Close <= p.Open):
		return errf("alert.close: %v must be in (0, open %v]", p.Close, p.Open)
	case p.For < 0 || p.ResolveAfter < 0 || p.Repeat < 0 || p.FlapWindow < 0:
		return errf("alert: durations must not be negative")
	case p.FlapCount > maxFlapCount:
		return errf("alert.flap_count: %d must be at most %d", p.FlapCount, maxFlapCount)
	}
	return nil
}

type lcState uint8

const (
	stOK lcState = iota
	stPending
	stFiring
	stFlapping
)

func (s lcState) String() string {
	return [...]string{"ok", "pending", "firing", "flapping"}[s]
}

type event uint8

const (
	evNone event = iota
	evFiring
	evRepeat
	evResolved
	evFlapping
	evFlapResolved
)

// lifecycle is the alert state of one detector of one sensor. Times are
// Unix nanoseconds on the detector's clock.
type lifecycle struct {
	st        lcState
	quiet     bool // firing, and the score is below Close since quietSince
	under     bool // flapping: the underlying condition is firing
	id        [16]byte
	since     int64 // pending start: when the score reached Open
	fired     int64
	quietAt   int64
	lastSent  int64
	lastTrans int64
	resolved  int64 // when the last incident resolved
	peak      float64
	first     float64
	last      float64
	reason    string // why it fired, kept for the resolved alert
	base      agent.Baseline
	trans     [maxFlapCount]int64 // ring of transition times
	tn, tp    uint8
}

// step advances the state with one evaluation and reports the transition
// that must be emitted, if any.
func (l *lifecycle) step(t int64, s, v float64, p *AlertParams) event {
	l.last = v
	switch l.st {
	case stOK:
		if s >= p.Open {
			l.st, l.since, l.peak, l.first = stPending, t, s, v
			if p.For <= 0 {
				return l.fire(t, p)
			}
		}
	case stPending:
		if s < p.Close {
			l.st = stOK
			return evNone
		}
		l.peak = max(l.peak, s)
		if t-l.since >= int64(p.For) {
			return l.fire(t, p)
		}
	case stFiring:
		l.peak = max(l.peak, s)
		if s < p.Close {
			if !l.quiet {
				l.quiet, l.quietAt = true, t
			}
			if t-l.quietAt >= int64(p.ResolveAfter) {
				l.st, l.quiet, l.resolved = stOK, false, t
				l.note(t)
				return evResolved
			}
			return evNone
		}
		l.quiet = false
		if p.Repeat > 0 && t-l.lastSent >= int64(p.Repeat) {
			l.lastSent = t
			return evRepeat
		}
	case stFlapping:
		l.peak = max(l.peak, s)
		if l.under {
			if s < p.Close {
				if !l.quiet {
					l.quiet, l.quietAt = true, t
				}
				if t-l.quietAt >= int64(p.ResolveAfter) {
					l.under, l.quiet = false, false
					l.note(t)
				}
			} else {
				l.quiet = false
			}
		} else if s >= p.Open {
			l.under = true
			l.note(t)
		} else if t-l.lastTrans >= int64(p.FlapWindow) {
			l.st, l.resolved, l.tn = stOK, t, 0
			return evFlapResolved
		}
	}
	return evNone
}

func (l *lifecycle) fire(t int64, p *AlertParams) event {
	flapping := p.FlapCount > 0 && l.recent(t, int64(p.FlapWindow)) >= p.FlapCount
	l.note(t)
	l.fired, l.lastSent, l.quiet = t, t, false
	if flapping {
		l.st, l.under = stFlapping, true
		return evFlapping
	}
	l.st = stFiring
	return evFiring
}

// note records a transition at t.
func (l *lifecycle) note(t int64) {
	l.lastTrans = t
	l.trans[l.tp] = t
	l.tp = (l.tp + 1) % maxFlapCount
	if l.tn < maxFlapCount {
		l.tn++
	}
}

// recent counts the transitions within window before t.
func (l *lifecycle) recent(t, window int64) int {
	c := 0
	for i := range int(l.tn) {
		if t-l.trans[(int(l.tp)-1-i+maxFlapCount)%maxFlapCount] < window {
			c++
		}
	}
	return c
}

func (l *lifecycle) appendState(b []byte) []byte {
	b = append(b, byte(l.st))
	b = putBool(b, l.quiet)
	b = putBool(b, l.under)
	b = append(b, l.id[:]...)
	for _, x := range [...]int64{l.since, l.fired, l.quietAt, l.lastSent, l.lastTrans, l.resolved} {
		b = putI(b, x)
	}
	for _, x := range [...]float64{l.peak, l.first, l.last, l.base.Mean, l.base.StdDev, l.base.Lo, l.base.Hi} {
		b = putF(b, x)
	}
	b = putI(b, l.base.N)
	b = putS(b, l.reason)
	b = append(b, l.tn, l.tp)
	for _, x := range l.trans[:l.tn] {
		b = putI(b, x)
	}
	return b
}

func (l *lifecycle) loadState(r *dec) {
	if !r.need(3 + 16) {
		return
	}
	if r.b[0] > byte(stFlapping) {
		r.err = errf("%w: alert state %d", ErrBadState, r.b[0])
		return
	}
	l.st = lcState(r.b[0])
	r.b = r.b[1:]
	l.quiet, l.under = r.bool(), r.bool()
	copy(l.id[:], r.b[:16])
	r.b = r.b[16:]
	for _, x := range [...]*int64{&l.since, &l.fired, &l.quietAt, &l.lastSent, &l.lastTrans, &l.resolved} {
		*x = r.i()
	}
	for _, x := range [...]*float64{&l.peak, &l.first, &l.last, &l.base.Mean, &l.base.StdDev, &l.base.Lo, &l.base.Hi} {
		*x = r.f()
	}
	l.base.N = r.i()
	l.reason = r.s()
	if !r.need(2) {
		return
	}
	l.tn, l.tp = r.b[0], r.b[1]
	r.b = r.b[2:]
	if l.tn > maxFlapCount || l.tp >= maxFlapCount {
		r.err = errf("%w: transition ring", ErrBadState)
		return
	}
	for i := range l.tn {
		l.trans[i] = r.i()
	}
}
