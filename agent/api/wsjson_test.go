package api

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// marshalReading is the reference encodeReading must match: json.Marshal of
// the documented wire types.
func marshalReading(r *agent.Result) []byte {
	m := WSReading{Sensor: r.Sensor, Kind: r.Kind, Unit: r.Unit, T: r.Time.UnixMilli(), V: r.Value,
		Raw: r.Raw, Score: r.Score, Detector: r.Detector, Flags: r.Flags}
	if r.Band != (agent.Band{}) && !math.IsInf(r.Band.Lo, 0) && !math.IsInf(r.Band.Hi, 0) {
		m.Band = &[2]float64{r.Band.Lo, r.Band.Hi}
	}
	b, err := json.Marshal(Message{Type: "reading", Reading: &m})
	if err != nil {
		return nil
	}
	return b
}

func checkEncodeReading(t *testing.T, r *agent.Result) {
	t.Helper()
	if got, want := encodeReading(r), marshalReading(r); !bytes.Equal(got, want) {
		t.Errorf("encodeReading(%+v)\n got %s\nwant %s", r, got, want)
	}
}

func TestEncodeReading_matchesJSONMarshal(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 23, 0, 0, 0, time.UTC)
	strs := []string{"", "bench/s-0001", "°C", "kWh", `a"b`, `back\slash`, "<tag>&", "tab\tnl\n", "\x01\x1f",
		"bad\xffutf8", "line\u2028sep\u2029", "emoji 🌡", "Grüße"}
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 21.5, 1e-6, 9.99e-7, 1e-7, -1.234e-9, 1e20, 1e21, -3e21, 123456789.125,
		math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN()}
	for _, s := range strs {
		checkEncodeReading(t, &agent.Result{Reading: agent.Reading{Sensor: s, Kind: s, Unit: s, Time: t0}, Detector: s})
	}
	for _, f := range floats {
		checkEncodeReading(t, &agent.Result{Reading: agent.Reading{Sensor: "s", Value: f, Time: t0}})
		checkEncodeReading(t, &agent.Result{Reading: agent.Reading{Sensor: "s", Time: t0}, Raw: f, Score: f})
		checkEncodeReading(t, &agent.Result{Reading: agent.Reading{Sensor: "s", Time: t0}, Band: agent.Band{Lo: f, Hi: 1}})
		checkEncodeReading(t, &agent.Result{Reading: agent.Reading{Sensor: "s", Time: t0}, Band: agent.Band{Lo: -1, Hi: f}})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		r := &agent.Result{
			Reading: agent.Reading{Sensor: strs[rng.IntN(len(strs))], Kind: strs[rng.IntN(len(strs))],
				Unit: strs[rng.IntN(len(strs))], Value: rng.NormFloat64() * math.Pow(10, float64(rng.IntN(50)-25)),
				Time: t0.Add(time.Duration(rng.Int64N(1e15))), Flags: agent.Flags(rng.IntN(64))},
			Raw: rng.Float64() * 1e3, Score: rng.ExpFloat64(), Detector: strs[rng.IntN(3)],
		}
		if rng.IntN(2) == 0 {
			r.Band = agent.Band{Lo: rng.NormFloat64(), Hi: rng.NormFloat64() * 1e8}
		}
		checkEncodeReading(t, r)
	}
}

func FuzzEncodeReading(f *testing.F) {
	f.Add("bench/s-1", "temperature", "°C", 21.5, 1e-7, int64(1700000000000))
	f.Add("a\"<b>", "", "\xff", math.Inf(1), 0.0, int64(-1))
	f.Fuzz(func(t *testing.T, sensor, kind, unit string, v, score float64, ms int64) {
		r := &agent.Result{Reading: agent.Reading{Sensor: sensor, Kind: kind, Unit: unit, Value: v, Time: time.UnixMilli(ms)},
			Raw: -v, Score: score, Band: agent.Band{Lo: v, Hi: score}}
		checkEncodeReading(t, r)
	})
}
