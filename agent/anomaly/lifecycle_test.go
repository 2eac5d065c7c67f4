package anomaly

import (
	"testing"
	"time"
)

func TestLifecycle_step(t *testing.T) {
	s := int64(time.Second)
	type ev struct {
		t     int64
		score float64
		want  event
	}
	tests := []struct {
		name  string
		p     AlertParams
		steps []ev
		end   lcState
	}{
		{"fires at once and resolves below close", AlertParams{}, []ev{
			{0, 0.1, evNone}, {1 * s, 0.9, evFiring}, {2 * s, 1, evNone}, {3 * s, 0.6, evNone}, // 0.6 ≥ close: still firing
			{4 * s, 0.4, evResolved}, {5 * s, 0.1, evNone}}, stOK},
		{"hysteresis: between close and open does not open", AlertParams{}, []ev{
			{0, 0.7, evNone}, {1 * s, 0.79, evNone}, {2 * s, 0.8, evFiring}}, stFiring},
		{"for: pending, reset by a low reading, then fires", AlertParams{For: 30 * time.Second}, []ev{
			{0, 0.9, evNone}, {10 * s, 0.9, evNone}, {20 * s, 0.2, evNone}, // reset
			{30 * s, 0.9, evNone}, {50 * s, 0.6, evNone}, {60 * s, 0.85, evFiring}}, stFiring},
		{"resolve_after: quiet period restarts on a high reading", AlertParams{ResolveAfter: time.Minute}, []ev{
			{0, 1, evFiring}, {10 * s, 0.1, evNone}, {60 * s, 0.1, evNone}, {65 * s, 0.9, evNone},
			{70 * s, 0.1, evNone}, {129 * s, 0.1, evNone}, {130 * s, 0.1, evResolved}}, stOK},
		{"repeat re-notifies while firing", AlertParams{Repeat: time.Minute}, []ev{
			{0, 1, evFiring}, {30 * s, 1, evNone}, {60 * s, 1, evRepeat}, {90 * s, 1, evNone},
			{120 * s, 1, evRepeat}, {121 * s, 0, evResolved}}, stOK},
		{"flapping: the fourth incident in 10m is one flapping alert", AlertParams{}, []ev{
			{0, 1, evFiring}, {1 * s, 0, evResolved},
			{2 * s, 1, evFiring}, {3 * s, 0, evResolved},
			{4 * s, 1, evFiring}, {5 * s, 0, evResolved},
			{6 * s, 1, evFlapping}, {7 * s, 0, evNone}, {8 * s, 1, evNone}, {9 * s, 0, evNone},
			{300 * s, 0, evNone},               // quiet but not for 10m yet
			{609 * s, 0, evFlapResolved},       // 10m after the last transition
			{700 * s, 1, evFiring}}, stFiring}, // a new incident is a normal one again
		{"flap detection off", AlertParams{FlapCount: -1}, []ev{
			{0, 1, evFiring}, {1 * s, 0, evResolved}, {2 * s, 1, evFiring}, {3 * s, 0, evResolved},
			{4 * s, 1, evFiring}, {5 * s, 0, evResolved}, {6 * s, 1, evFiring}}, stFiring},
		{"slow incidents do not flap", AlertParams{}, []ev{
			{0, 1, evFiring}, {1 * s, 0, evResolved}, {300 * s, 1, evFiring}, {301 * s, 0, evResolved},
			{600 * s, 1, evFiring}, {601 * s, 0, evResolved}, {900 * s, 1, evFiring}}, stFiring},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p.withDefaults()
			var l lifecycle
			for i, st := range tt.steps {
				if got := l.step(st.t, st.score, 0, &p); got != st.want {
					t.Fatalf("step %d (t=%ds score %v): event %d; want %d (state %v)", i, st.t/s, st.score, got, st.want, l.st)
				}
			}
			if l.st != tt.end {
				t.Errorf("end state %v; want %v", l.st, tt.end)
			}
		})
	}
}

func TestLifecycle_peakAndValues(t *testing.T) {
	p := AlertParams{}.withDefaults()
	var l lifecycle
	l.step(0, 0.85, 10, &p)
	l.step(1, 0.99, 12, &p)
	l.step(2, 0.9, 11, &p)
	if l.peak != 0.99 || l.first != 10 || l.last != 11 || l.since != 0 {
		t.Errorf("peak %v first %v last %v since %v", l.peak, l.first, l.last, l.since)
	}
}

func TestAlertParams_validate(t *testing.T) {
	for _, p := range []AlertParams{
		{Open: 1.5}, {Open: 0.5, Close: 0.6}, {For: -1}, {FlapCount: 17},
	} {
		if err := p.withDefaults().validate(); err == nil {
			t.Errorf("validate(%+v) = nil", p)
		}
	}
	if err := (AlertParams{Open: 0.3}).withDefaults().validate(); err != nil {
		t.Errorf("open 0.3 with default close: %v", err)
	}
}
