package sim

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExport_layoutAndLabels(t *testing.T) {
	dir := t.TempDir()
	inj, err := Export(ExportOptions{Dir: dir, Seed: 7, Sensors: 10, Days: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "labels", "combined_windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	var labels map[string][][2]string
	if err := json.Unmarshal(b, &labels); err != nil {
		t.Fatal(err)
	}
	if len(labels) != 10 {
		t.Fatalf("%d labelled files, want 10", len(labels))
	}
	rows := 3 * 24 * 30
	faults := 0
	for rel, ws := range labels {
		data, err := os.ReadFile(filepath.Join(dir, "data", rel))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if lines[0] != "timestamp,value" || len(lines) != rows+1 {
			t.Fatalf("%s: header %q, %d rows, want %d", rel, lines[0], len(lines)-1, rows)
		}
		index := map[string]int{}
		for i, l := range lines[1:] {
			ts, _, _ := strings.Cut(l, ",")
			index[ts] = i
		}
		if len(ws) != len(inj[rel]) {
			t.Fatalf("%s: %d windows for %d injections", rel, len(ws), len(inj[rel]))
		}
		for k, w := range ws {
			lo, ok1 := index[w[0]]
			hi, ok2 := index[w[1]]
			if !ok1 || !ok2 {
				t.Fatalf("%s window %d: limits %v are not rows", rel, k, w)
			}
			at := inj[rel][k].Row
			if at < lo || at > hi || at < rows*15/100 {
				t.Errorf("%s window %d: rows %d-%d do not hold the onset %d after probation", rel, k, lo, hi, at)
			}
			if want := rows / 10 / len(ws); hi-lo+1 != want {
				t.Errorf("%s window %d: width %d, want %d", rel, k, hi-lo+1, want)
			}
			if k > 0 && lo <= 0 {
				t.Errorf("%s: windows overlap", rel)
			}
			faults++
		}
	}
	if faults == 0 {
		t.Fatal("no faults injected")
	}
	// Same seed, same corpus.
	dir2 := t.TempDir()
	if _, err := Export(ExportOptions{Dir: dir2, Seed: 7, Sensors: 10, Days: 3}); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(filepath.Join(dir2, "labels", "combined_windows.json"))
	if string(b) != string(b2) {
		t.Error("same seed gave different labels")
	}
}

func TestSensor_newAnomalies(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	for _, a := range []Anomaly{Dropout, Saturation, LevelShift} {
		s := NewSensor(0, 1) // temperature around 21
		for i := range 50 {
			s.Next(t0.Add(time.Duration(i) * time.Minute))
		}
		at := t0.Add(50 * time.Minute)
		s.Inject(a, at, time.Hour)
		v, _ := s.Next(at)
		switch a {
		case Dropout:
			if v != 0 {
				t.Errorf("dropout: %v, want 0", v)
			}
		case LevelShift:
			if math.Abs(s.shift) < 6*s.p.std {
				t.Errorf("level shift of %v is within the noise (σ %v)", s.shift, s.p.std)
			}
		case Saturation:
			if v < 21+3 {
				t.Errorf("%s: %v is within the normal range", a, v)
			}
		}
	}
}
