package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// ExportOptions configures Export.
type ExportOptions struct {
	Dir     string        // output root: Dir/data/<kind>/<sensor>.csv, Dir/labels/combined_windows.json. Required.
	Seed    uint64        // same seed, same corpus
	Sensors int           // number of series; zero means 20
	Days    float64       // length of each series; zero means 7
	Every   time.Duration // sampling interval; zero means 2m
	Start   time.Time     // first timestamp; zero means 2026-01-05 00:00 UTC
}

func (o *ExportOptions) ensureDefaults() {
	if o.Sensors <= 0 {
		o.Sensors = 20
	}
	if o.Days <= 0 {
		o.Days = 7
	}
	if o.Every <= 0 {
		o.Every = 2 * time.Minute
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	}
}

// ExportAnomalies are the faults Export injects (silence is left out: NAB's
// layout has a row per reading).
var ExportAnomalies = []Anomaly{Spike, LevelShift, Drift, Stuck, NoiseBurst, Dropout, Saturation, PatternLoss}

// Injection is one fault placed in an exported series.
type Injection struct {
	Anomaly Anomaly
	Row     int // first affected row
	Rows    int // affected rows
}

// Export writes a labelled corpus in the Numenta Anomaly Benchmark's layout
// from the simulated fleet: one timestamp,value CSV per sensor under
// data/<kind>/, with 0 to 3 injected faults after the first 15% of rows, and
// labels/combined_windows.json with one window per fault, centred on its
// onset and sized like NAB's (10% of the series split across its faults).
// It returns the injections per data file.
func Export(o ExportOptions) (map[string][]Injection, error) {
	o.ensureDefaults()
	if o.Dir == "" {
		return nil, fmt.Errorf("sim: export: Dir is required")
	}
	rows := int(o.Days * 24 * float64(time.Hour) / float64(o.Every))
	if rows < 200 {
		return nil, fmt.Errorf("sim: export: %d rows per series is too short (need 200)", rows)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xe4b0))
	windows := map[string][][2]string{}
	injected := map[string][]Injection{}
	const layout = "2006-01-02 15:04:05"
	for i := range o.Sensors {
		s := NewSensor(i, o.Seed)
		rel := s.Kind + "/" + s.ID + ".csv"
		inj := plan(rng, rows, o.Every)
		injected[rel] = inj
		ws := [][2]string{}
		if len(inj) > 0 {
			width := rows / 10 / len(inj)
			for _, in := range inj {
				lo := max(0, in.Row-width/2)
				hi := min(rows-1, lo+width-1)
				ws = append(ws, [2]string{o.Start.Add(time.Duration(lo) * o.Every).Format(layout),
					o.Start.Add(time.Duration(hi) * o.Every).Format(layout)})
			}
		}
		windows[rel] = ws
		if err := writeSeries(filepath.Join(o.Dir, "data", filepath.FromSlash(rel)), s, inj, rows, o.Start, o.Every); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "labels"), 0o755); err != nil {
		return nil, fmt.Errorf("sim: export: %w", err)
	}
	b, err := json.MarshalIndent(windows, "", "    ")
	if err != nil {
		return nil, fmt.Errorf("sim: export: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "labels", "combined_windows.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("sim: export: %w", err)
	}
	return injected, nil
}

// plan places 0-3 non-overlapping faults after the probationary 15%, with
// their windows apart.
func plan(rng *rand.Rand, rows int, every time.Duration) []Injection {
	n := rng.IntN(4) // 0..3
	if n == 0 {
		return nil
	}
	width := rows / 10 / n
	first := rows*15/100 + width
	var out []Injection
	for tries := 0; len(out) < n && tries < 100; tries++ {
		a := ExportAnomalies[rng.IntN(len(ExportAnomalies))]
		at := first + rng.IntN(rows-first-width)
		d := time.Duration(1+rng.IntN(6)) * time.Hour
		if a == Spike {
			d = every
		}
		if a == Drift {
			d = time.Duration(6+rng.IntN(18)) * time.Hour
		}
		ok := true
		for _, o := range out {
			if at > o.Row-2*width && at < o.Row+2*width {
				ok = false
			}
		}
		if ok {
			out = append(out, Injection{Anomaly: a, Row: at, Rows: max(1, int(d/every))})
		}
	}
	slices.SortFunc(out, func(a, b Injection) int { return a.Row - b.Row })
	return out
}

func writeSeries(file string, s *Sensor, inj []Injection, rows int, start time.Time, every time.Duration) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("sim: export: %w", err)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("sim: export: %w", err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("timestamp,value\n")
	buf := make([]byte, 0, 64)
	k := 0
	for r := range rows {
		t := start.Add(time.Duration(r) * every)
		if k < len(inj) && r == inj[k].Row {
			s.Inject(inj[k].Anomaly, t, time.Duration(inj[k].Rows)*every)
			k++
		}
		v, _ := s.Next(t)
		buf = t.AppendFormat(buf[:0], "2006-01-02 15:04:05")
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, v, 'f', 4, 64)
		buf = append(buf, '\n')
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("sim: export %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sim: export %s: %w", file, err)
	}
	return nil
}
