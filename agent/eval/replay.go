package eval

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// ReplayOptions configures Replay.
type ReplayOptions struct {
	// Data is the folder whose *.csv files (columns timestamp,value) are
	// replayed, searched recursively. Required unless Inputs is set.
	Data string
	// Inputs, when set, are replayed instead of the files under Data.
	Inputs []Input
	// Out, when set, receives Out/<Detector>/<category>/<Detector>_<file>.csv
	// with columns timestamp,value,anomaly_score,label (NAB's results layout).
	Out string
	// Detector names the results folder and file prefix. "" means "edgeagent".
	Detector string
	// Labels, when set, fills the label column (1 inside a window). nil: all 0.
	Labels Labels
	// NewStage returns the per-sensor engine to replay a series through; it is
	// called once per series so each series starts from fresh state. Required.
	NewStage func() (agent.Stage, error)
	// Workers replays that many series in parallel. Zero means GOMAXPROCS.
	Workers int
	// Logger receives progress; nil discards.
	Logger *slog.Logger
}

// DefaultWorkers is the number of series Replay runs in parallel by default.
func DefaultWorkers() int { return runtime.GOMAXPROCS(0) }

func (o *ReplayOptions) ensureDefaults() {
	if o.Detector == "" {
		o.Detector = "edgeagent"
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Input is one series to replay from memory (a sensor's stored history).
type Input struct {
	Name         string // results name, e.g. "boiler/boiler-1.csv"
	Sensor, Kind string // the reading's sensor and kind, for rule matching
	Times        []time.Time
	Values       []float64
}

// Replayed is one series after replay.
type Replayed struct {
	Series
	Values []float64
	// Alerts are the lifecycle transitions the stage emitted, in order.
	Alerts []agent.Alert
}

// SeriesOf returns the scorer's view of replayed series.
func SeriesOf(rs []Replayed) []Series {
	out := make([]Series, len(rs))
	for i := range rs {
		out[i] = rs[i].Series
	}
	return out
}

// Replay feeds every series under o.Data (or o.Inputs) through a fresh stage, one reading at
// a time in file order with the reading time taken from the CSV, records each
// reading's raw score (Result.Score, before alert hysteresis) and the alerts
// raised, and writes NAB-layout results when o.Out is set. The gateway clock
// of the stage (Tick) follows reading time. Results come back sorted by name.
func Replay(ctx context.Context, o ReplayOptions) ([]Replayed, error) {
	o.ensureDefaults()
	if o.NewStage == nil {
		return nil, errors.New("eval: replay: NewStage is required")
	}
	var names []string
	if o.Inputs != nil {
		for _, in := range o.Inputs {
			names = append(names, in.Name)
		}
	} else {
		var err error
		if names, err = ListCSV(o.Data); err != nil {
			return nil, err
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("eval: replay: no series (no *.csv files under %q)", o.Data)
	}
	out := make([]Replayed, len(names))
	errs := make([]error, len(names))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.Workers, len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				in := Input{Name: names[i]}
				if o.Inputs != nil {
					in = o.Inputs[i]
				}
				out[i], errs[i] = replayOne(&o, in)
			}
		}()
	}
feed:
	for i := range names {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ListCSV returns the *.csv files under dir, relative to it with forward
// slashes, sorted.
func ListCSV(dir string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".csv") && !strings.HasPrefix(d.Name(), ".") {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eval: data %s: %w", dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func replayOne(o *ReplayOptions, in Input) (Replayed, error) {
	name, times, values := in.Name, in.Times, in.Values
	if o.Inputs == nil {
		var err error
		times, values, err = ReadSeries(filepath.Join(o.Data, filepath.FromSlash(name)))
		if err != nil {
			return Replayed{}, err
		}
		in.Sensor = strings.TrimSuffix(name, ".csv")
	}
	if len(times) != len(values) {
		return Replayed{}, fmt.Errorf("eval: %s: %d times for %d values", name, len(times), len(values))
	}
	st, err := o.NewStage()
	if err != nil {
		return Replayed{}, fmt.Errorf("eval: %s: stage: %w", name, err)
	}
	start := time.Now()
	rp := Replayed{Series: Series{Name: name, Times: times, Scores: make([]float64, len(times))}, Values: values}
	var res agent.Result
	var alerts []agent.Alert
	for i, t := range times {
		r := agent.Reading{Sensor: in.Sensor, Kind: in.Kind, Value: values[i], Time: t, Arrived: t}
		alerts = st.Tick(t, alerts[:0])
		rp.Alerts = append(rp.Alerts, alerts...)
		res = agent.Result{}
		alerts = st.Process(r, &res, alerts[:0])
		rp.Alerts = append(rp.Alerts, alerts...)
		s := res.Score
		if math.IsNaN(s) || s < 0 {
			s = 0
		}
		rp.Scores[i] = min(s, 1)
	}
	o.Logger.Debug("replayed", "series", name, "rows", len(times), "took", time.Since(start))
	if o.Out != "" {
		if err := writeResult(o, &rp); err != nil {
			return Replayed{}, err
		}
	}
	return rp, nil
}

// ReadSeries reads a timestamp,value CSV (header required, extra columns
// ignored). Values must be finite numbers.
func ReadSeries(file string) ([]time.Time, []float64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("eval: %s: header: %w", file, err)
	}
	ti, vi := -1, -1
	for i, h := range head {
		switch strings.TrimSpace(h) {
		case "timestamp":
			ti = i
		case "value":
			vi = i
		}
	}
	if ti < 0 || vi < 0 {
		return nil, nil, fmt.Errorf("eval: %s: need columns timestamp and value (header: %s)", file, strings.Join(head, ","))
	}
	var times []time.Time
	var values []float64
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("eval: %s:%d: %w", file, line, err)
		}
		if len(rec) <= max(ti, vi) {
			return nil, nil, fmt.Errorf("eval: %s:%d: %d fields", file, line, len(rec))
		}
		t, err := ParseTime(rec[ti])
		if err != nil {
			return nil, nil, fmt.Errorf("eval: %s:%d: %w", file, line, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[vi]), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("eval: %s:%d: value %q is not a finite number", file, line, rec[vi])
		}
		times = append(times, t)
		values = append(values, v)
	}
	return times, values, nil
}

// ResultPath is where Replay writes a series' results below the results root.
func ResultPath(detector, name string) string {
	dir, file := filepath.Split(filepath.FromSlash(name))
	return filepath.Join(detector, dir, detector+"_"+file)
}

func writeResult(o *ReplayOptions, rp *Replayed) error {
	p := filepath.Join(o.Out, ResultPath(o.Detector, rp.Name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("eval: results: %w", err)
	}
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("eval: results: %w", err)
	}
	w := bufio.NewWriter(f)
	ws := o.Labels[rp.Name]
	k := 0
	buf := make([]byte, 0, 96)
	w.WriteString("timestamp,value,anomaly_score,label\n")
	for i, t := range rp.Times {
		for k < len(ws) && t.After(ws[k].End) {
			k++
		}
		label := byte('0')
		if k < len(ws) && !t.Before(ws[k].Start) {
			label = '1'
		}
		buf = t.AppendFormat(buf[:0], TimeLayout)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, rp.Values[i], 'g', -1, 64)
		buf = append(buf, ',')
		buf = strconv.AppendFloat(buf, rp.Scores[i], 'g', -1, 64)
		buf = append(buf, ',', label, '\n')
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("eval: results %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("eval: results %s: %w", p, err)
	}
	return nil
}

// LoadResults reads a NAB results folder (<category>/<detector>_<file>.csv
// with columns timestamp and anomaly_score), as nabscore.py does: the first
// "<detector>_" of each file name is removed to find the data file.
func LoadResults(dir, detector string) ([]Series, error) {
	names, err := ListCSV(dir)
	if err != nil {
		return nil, err
	}
	var out []Series
	for _, rel := range names {
		if strings.Contains(rel, "_scores.csv") {
			continue
		}
		d, file := path2(rel)
		file = strings.Replace(file, detector+"_", "", 1)
		name := file
		if d != "" {
			name = d + "/" + file
		}
		s, err := readScores(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, err
		}
		s.Name = name
		out = append(out, s)
	}
	return out, nil
}

func path2(rel string) (dir, file string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

func readScores(file string) (Series, error) {
	f, err := os.Open(file)
	if err != nil {
		return Series{}, fmt.Errorf("eval: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReader(f))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return Series{}, fmt.Errorf("eval: %s: header: %w", file, err)
	}
	ti, si := -1, -1
	for i, h := range head {
		switch strings.TrimSpace(h) {
		case "timestamp":
			ti = i
		case "anomaly_score":
			si = i
		}
	}
	if ti < 0 || si < 0 {
		return Series{}, fmt.Errorf("eval: %s: need columns timestamp and anomaly_score", file)
	}
	var s Series
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Series{}, fmt.Errorf("eval: %s:%d: %w", file, line, err)
		}
		if len(rec) <= max(ti, si) {
			return Series{}, fmt.Errorf("eval: %s:%d: %d fields", file, line, len(rec))
		}
		t, err := ParseTime(rec[ti])
		if err != nil {
			return Series{}, fmt.Errorf("eval: %s:%d: %w", file, line, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[si]), 64)
		if err != nil {
			return Series{}, fmt.Errorf("eval: %s:%d: anomaly_score %q: %w", file, line, rec[si], err)
		}
		s.Times = append(s.Times, t)
		s.Scores = append(s.Scores, v)
	}
	return s, nil
}
