// Package eval scores anomaly detectors the way the Numenta Anomaly Benchmark
// (NAB v1.1) does and replays labelled time series through an agent.Stage, so
// the detector code the live agent runs can be measured offline.
//
// The scorer follows NAB v1.1 (nab/sweeper.py, optimizer.py, scorer.py) and
// agrees with ../shared/tools/nabscore.py: a probationary period at the start
// of each file is not scored; a labelled window is worth the scaled sigmoid of
// its earliest detection (tpWeight at the left edge), an undetected window
// costs fnWeight, a detection outside every window costs fpWeight scaled by
// its distance from the previous window; one threshold per profile is chosen
// for the whole corpus by sweeping every distinct score (ties go to the
// highest threshold); scores are normalised against a perfect detector (100)
// and NAB's null detector (0).
package eval

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"
)

// Profile is one NAB application profile (cost matrix).
type Profile struct {
	Name     string
	TPWeight float64
	FPWeight float64
	FNWeight float64
}

// DefaultProfiles returns NAB's three profiles (config/profiles.json), in
// NAB's order: standard, reward_low_FP_rate, reward_low_FN_rate.
func DefaultProfiles() []Profile {
	return []Profile{
		{Name: "standard", TPWeight: 1, FPWeight: 0.11, FNWeight: 1},
		{Name: "reward_low_FP_rate", TPWeight: 1, FPWeight: 0.22, FNWeight: 1},
		{Name: "reward_low_FN_rate", TPWeight: 1, FPWeight: 0.11, FNWeight: 2},
	}
}

// LoadProfiles reads profiles in NAB's config/profiles.json layout
// ({name: {"CostMatrix": {tpWeight, fpWeight, fnWeight}}}). NAB's three come
// first in NAB's order, others follow sorted by name.
func LoadProfiles(file string) ([]Profile, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("profiles: %w", err)
	}
	var raw map[string]struct {
		CostMatrix map[string]float64
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("profiles %s: %w", file, err)
	}
	order := map[string]int{"standard": 0, "reward_low_FP_rate": 1, "reward_low_FN_rate": 2}
	var out []Profile
	for name, body := range raw {
		m := body.CostMatrix
		tp, ok1 := m["tpWeight"]
		fp, ok2 := m["fpWeight"]
		fn, ok3 := m["fnWeight"]
		if !ok1 || !ok2 || !ok3 {
			return nil, fmt.Errorf("profiles %s: %s: CostMatrix needs tpWeight, fpWeight, fnWeight", file, name)
		}
		out = append(out, Profile{Name: name, TPWeight: tp, FPWeight: fp, FNWeight: fn})
	}
	rank := func(p Profile) int {
		if r, ok := order[p.Name]; ok {
			return r
		}
		return len(order)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := rank(out[i]), rank(out[j])
		if ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Window is one labelled anomaly window; both limits are timestamps of rows
// of the data file.
type Window struct {
	Start, End time.Time
}

// Labels maps a data file's path relative to the data folder, with forward
// slashes ("realKnownCause/nyc_taxi.csv"), to its windows in time order.
type Labels map[string][]Window

// Windows counts the windows of every file.
func (l Labels) Windows() int {
	n := 0
	for _, ws := range l {
		n += len(ws)
	}
	return n
}

// LoadLabels reads NAB's labels/combined_windows.json layout:
// {"cat/file.csv": [["start", "end"], ...]}.
func LoadLabels(file string) (Labels, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	var raw map[string][][]string
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("labels %s: %w", file, err)
	}
	out := make(Labels, len(raw))
	for rel, pairs := range raw {
		ws := make([]Window, 0, len(pairs))
		for k, p := range pairs {
			if len(p) != 2 {
				return nil, fmt.Errorf("labels %s: %s window %d: expected [start, end]", file, rel, k)
			}
			s, err := ParseTime(p[0])
			if err != nil {
				return nil, fmt.Errorf("labels %s: %s window %d: %w", file, rel, k, err)
			}
			e, err := ParseTime(p[1])
			if err != nil {
				return nil, fmt.Errorf("labels %s: %s window %d: %w", file, rel, k, err)
			}
			ws = append(ws, Window{Start: s, End: e})
		}
		out[rel] = ws
	}
	return out, nil
}

// WriteLabels writes l in NAB's combined_windows.json layout, timestamps as
// "2006-01-02 15:04:05.000000" like NAB's.
func WriteLabels(file string, l Labels) error {
	raw := make(map[string][][]string, len(l))
	for rel, ws := range l {
		pairs := make([][]string, 0, len(ws))
		for _, w := range ws {
			pairs = append(pairs, []string{w.Start.Format(labelLayout), w.End.Format(labelLayout)})
		}
		raw[rel] = pairs
	}
	b, err := json.MarshalIndent(raw, "", "    ")
	if err != nil {
		return fmt.Errorf("labels %s: %w", file, err)
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	return nil
}

const labelLayout = "2006-01-02 15:04:05.000000"

// TimeLayout is how Replay writes timestamps (NAB's data layout).
const TimeLayout = "2006-01-02 15:04:05"

var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	time.RFC3339Nano,
	"2006-01-02 15:04",
	"2006-01-02",
}

// ParseTime parses a NAB timestamp ("2014-04-10 07:15:00", optionally with a
// fraction, a T separator or a zone); a time without a zone is UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse timestamp %q", s)
}

// Series is one detector's output for one data file.
type Series struct {
	Name   string      // data file relative to the data folder, e.g. "realTraffic/speed_7578.csv"
	Times  []time.Time // one per row of the data file
	Scores []float64   // anomaly score per row, finite and below 1.1
}

// Category is the series' folder ("realTraffic"), "" at the top level.
func (s *Series) Category() string {
	d := path.Dir(s.Name)
	if d == "." {
		return ""
	}
	return d
}

// ProbationPercent is NAB's probationary share of each file.
const ProbationPercent = 0.15

// noDetection is above every score: the sweep's first point.
const noDetection = 1.1

const outside = -1

// scaledSigmoid is NAB's reward for a detection at a position relative to a
// window's right edge: -1 is the left edge, 0 the right edge, > 3 is -1.
func scaledSigmoid(p float64) float64 {
	if p > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*p)) - 1
}

var maxTP = scaledSigmoid(-1)

// probation is the number of unscored rows at the start of a file.
func probation(rows int) int {
	p := math.Min(math.Floor(ProbationPercent*float64(rows)), ProbationPercent*5000)
	return int(math.Ceil(p))
}

// sweep is one file reduced to what the scorer needs.
type sweep struct {
	name       string
	category   string
	first      int       // first scored row
	windows    [][3]int  // left, right, width
	slot       []int32   // window index per row, outside when none
	unweighted []float64 // reward (in a window) or penalty (outside) per row
	scores     []float64
}

func newSweep(name string, times []time.Time, ws []Window, scores []float64) (*sweep, error) {
	n := len(times)
	s := &sweep{name: name, category: path.Dir(name), first: probation(n), scores: scores,
		slot: make([]int32, n), unweighted: make([]float64, n)}
	if s.category == "." {
		s.category = ""
	}
	where := make(map[int64]int, n)
	counts := make(map[int64]int, n)
	for i, t := range times {
		k := t.UnixNano()
		counts[k]++
		if _, ok := where[k]; !ok {
			where[k] = i
		}
	}
	for k, w := range ws {
		for _, e := range []time.Time{w.Start, w.End} {
			switch c := counts[e.UnixNano()]; {
			case c == 0:
				return nil, fmt.Errorf("labels: %s window %d: timestamp %s is missing in the data file", name, k, e.Format(TimeLayout))
			case c > 1:
				return nil, fmt.Errorf("labels: %s window %d: timestamp %s repeats in the data file", name, k, e.Format(TimeLayout))
			}
		}
		l, r := where[w.Start.UnixNano()], where[w.End.UnixNano()]
		if r < l {
			return nil, fmt.Errorf("labels: %s window %d ends before it starts", name, k)
		}
		if len(s.windows) > 0 && l <= s.windows[len(s.windows)-1][1] {
			return nil, fmt.Errorf("labels: %s window %d overlaps or precedes window %d", name, k, k-1)
		}
		s.windows = append(s.windows, [3]int{l, r, r - l + 1})
	}
	k := -1
	prevRight, prevWidth := -1, -1
	starts := make(map[int]int, len(s.windows))
	for j, w := range s.windows {
		starts[w[0]] = j
	}
	for i := 0; i < n; i++ {
		if k < 0 {
			if j, ok := starts[i]; ok {
				k = j
			}
		}
		switch {
		case k >= 0:
			right, width := s.windows[k][1], s.windows[k][2]
			s.unweighted[i] = scaledSigmoid(-float64(right-i+1) / float64(width))
			s.slot[i] = int32(k)
			if i == right {
				prevRight, prevWidth, k = right, width, -1
			}
		case prevRight < 0:
			s.slot[i] = outside
			s.unweighted[i] = -1
		default:
			if prevWidth == 1 {
				return nil, fmt.Errorf("labels: %s: a one-row window leaves false positives after it unscoreable (NAB divides by width - 1)", name)
			}
			s.slot[i] = outside
			s.unweighted[i] = scaledSigmoid(math.Abs(float64(prevRight-i)) / float64(prevWidth-1))
		}
	}
	return s, nil
}

func (s *sweep) weighted(i int, p Profile) float64 {
	if s.slot[i] == outside {
		return s.unweighted[i] * p.FPWeight
	}
	return s.unweighted[i] * p.TPWeight / maxTP
}

// run is a detector's output over the corpus, ready to sweep.
type run struct {
	files []*sweep
	// points of every scored row, highest score first (stable).
	pf     []int32 // file index
	pi     []int32 // row
	pscore []float64
}

func newRun(files []*sweep) *run {
	r := &run{files: files}
	for f, s := range files {
		for i := s.first; i < len(s.scores); i++ {
			r.pf = append(r.pf, int32(f))
			r.pi = append(r.pi, int32(i))
		}
	}
	idx := make([]int32, len(r.pf))
	for j := range idx {
		idx[j] = int32(j)
	}
	score := func(j int32) float64 { return files[r.pf[j]].scores[r.pi[j]] }
	slices.SortStableFunc(idx, func(a, b int32) int {
		sa, sb := score(a), score(b)
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	pf, pi := make([]int32, len(idx)), make([]int32, len(idx))
	r.pscore = make([]float64, len(idx))
	for k, j := range idx {
		pf[k], pi[k], r.pscore[k] = r.pf[j], r.pi[j], score(j)
	}
	r.pf, r.pi = pf, pi
	return r
}

func leftSum(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t
}

// best sweeps every distinct score and returns the threshold with the highest
// raw score (ties: the highest threshold), as NAB v1.1's optimizer does.
func (r *run) best(p Profile) (threshold, raw float64) {
	type key struct{ f, k int32 }
	slots := map[key]int{}
	parts := []float64{0}
	for j := range r.pf {
		f, i := r.pf[j], r.pi[j]
		if k := r.files[f].slot[i]; k != outside {
			if _, ok := slots[key{f, k}]; !ok {
				slots[key{f, k}] = len(parts)
				parts = append(parts, -p.FNWeight)
			}
		}
	}
	threshold, raw = noDetection, math.Inf(-1)
	consider := func(t float64) {
		if s := leftSum(parts); s > raw {
			threshold, raw = t, s
		}
	}
	current := noDetection
	for j := range r.pf {
		if a := r.pscore[j]; a != current {
			consider(current)
			current = a
		}
		f, i := r.pf[j], int(r.pi[j])
		s := r.files[f]
		w := s.weighted(i, p)
		if k := s.slot[i]; k == outside {
			parts[0] += w
		} else if n := slots[key{f, k}]; w > parts[n] {
			parts[n] = w
		}
	}
	consider(current)
	return threshold, raw
}

// FileScore is one file's outcome at a profile's threshold.
type FileScore struct {
	Name             string
	Raw              float64
	TP, FP, FN, TN   int
	Rows             int // scored rows
	Windows          int // windows with at least one scored row
	WindowsDetected  int
	FirstDetectDelay []int // rows from each detected window's left edge to its first detection
}

func (s *sweep) score(p Profile, threshold float64) FileScore {
	rows := make([]int, 0, len(s.scores)-s.first)
	for i := s.first; i < len(s.scores); i++ {
		rows = append(rows, i)
	}
	slices.SortStableFunc(rows, func(a, b int) int {
		switch {
		case s.scores[a] > s.scores[b]:
			return -1
		case s.scores[a] < s.scores[b]:
			return 1
		}
		return 0
	})
	parts := []float64{0}
	slots := map[int32]int{}
	for _, i := range rows {
		if k := s.slot[i]; k != outside {
			if _, ok := slots[k]; !ok {
				slots[k] = len(parts)
				parts = append(parts, -p.FNWeight)
			}
		}
	}
	fs := FileScore{Name: s.name, Rows: len(rows)}
	firstHit := map[int32]int{}
	for _, i := range rows {
		if s.scores[i] < threshold {
			break
		}
		k := s.slot[i]
		w := s.weighted(i, p)
		if k == outside {
			fs.FP++
			parts[0] += w
			continue
		}
		fs.TP++
		if n := slots[k]; w > parts[n] {
			parts[n] = w
		}
		if h, ok := firstHit[k]; !ok || i < h {
			firstHit[k] = i
		}
	}
	inWindow := 0
	for _, i := range rows {
		if s.slot[i] != outside {
			inWindow++
		}
	}
	fs.Raw = leftSum(parts)
	fs.TN = len(rows) - inWindow - fs.FP
	fs.FN = inWindow - fs.TP
	for k, w := range s.windows {
		if w[1] >= s.first {
			fs.Windows++
			if h, ok := firstHit[int32(k)]; ok {
				fs.WindowsDetected++
				fs.FirstDetectDelay = append(fs.FirstDetectDelay, h-w[0])
			}
		}
	}
	return fs
}

// ProfileScore is the corpus outcome for one profile.
type ProfileScore struct {
	Profile    Profile
	Threshold  float64
	Raw        float64 // sum of the files' raw scores at Threshold
	Null       float64 // NAB's null detector's optimised raw score
	Perfect    float64 // TPWeight × windows in the labels
	Normalized float64 // 100 × (Raw − Null) / (Perfect − Null)

	TP, FP, FN, TN           int
	Windows, WindowsDetected int
	// Categories holds the same figures per data folder at the corpus
	// threshold, normalised against the null detector's score on that folder.
	Categories []CategoryScore
	Files      []FileScore
}

// CategoryScore is one data folder's share of a ProfileScore.
type CategoryScore struct {
	Category                 string
	Files                    int
	Raw, Null, Perfect       float64
	Normalized               float64
	Windows, WindowsDetected int
}

// Report is the outcome of Score.
type Report struct {
	Files    int
	Profiles []ProfileScore
}

// Profile returns the score for the profile named name (zero when absent).
func (r *Report) Profile(name string) ProfileScore {
	for _, p := range r.Profiles {
		if p.Profile.Name == name {
			return p
		}
	}
	return ProfileScore{}
}

// Score scores a detector's series against labels with NAB v1.1's method.
// Every labelled file must have a series (as nabscore.py without
// --allow-missing); series without labels are ignored. nil profiles means
// DefaultProfiles. The null baseline is a detector scoring 0.5 on every row
// of every labelled file, on the series' timestamps.
func Score(series []Series, labels Labels, profiles []Profile) (*Report, error) {
	if profiles == nil {
		profiles = DefaultProfiles()
	}
	byName := make(map[string]*Series, len(series))
	for i := range series {
		s := &series[i]
		if len(s.Times) != len(s.Scores) {
			return nil, fmt.Errorf("%s: %d scores for %d rows", s.Name, len(s.Scores), len(s.Times))
		}
		for j, v := range s.Scores {
			if math.IsNaN(v) || math.IsInf(v, 0) || v >= noDetection {
				return nil, fmt.Errorf("%s: row %d: anomaly score %v: NAB needs finite scores below 1.1", s.Name, j+1, v)
			}
		}
		if _, dup := byName[s.Name]; dup {
			return nil, fmt.Errorf("%s: two series", s.Name)
		}
		byName[s.Name] = s
	}
	names := make([]string, 0, len(labels))
	for rel := range labels {
		if _, ok := byName[rel]; !ok {
			return nil, fmt.Errorf("no results for labelled data file %s", rel)
		}
		names = append(names, rel)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("no labelled series to score")
	}
	det := make([]*sweep, 0, len(names))
	null := make([]*sweep, 0, len(names))
	for _, rel := range names {
		s := byName[rel]
		sw, err := newSweep(rel, s.Times, labels[rel], s.Scores)
		if err != nil {
			return nil, err
		}
		det = append(det, sw)
		half := make([]float64, len(s.Times))
		for i := range half {
			half[i] = 0.5
		}
		nw := *sw
		nw.scores = half
		null = append(null, &nw)
	}
	dr, nr := newRun(det), newRun(null)
	windows := labels.Windows()
	rep := &Report{Files: len(names)}
	for _, p := range profiles {
		nt, nraw := nr.best(p)
		t, _ := dr.best(p)
		ps := ProfileScore{Profile: p, Threshold: t, Null: nraw, Perfect: p.TPWeight * float64(windows)}
		if ps.Perfect == ps.Null {
			return nil, fmt.Errorf("profile %s: perfect and null scores are equal (%v)", p.Name, ps.Null)
		}
		cats := map[string]*CategoryScore{}
		var catOrder []string
		raws := make([]float64, 0, len(det))
		for f, s := range det {
			fs := s.score(p, t)
			ns := null[f].score(p, nt)
			ps.Files = append(ps.Files, fs)
			raws = append(raws, fs.Raw)
			ps.TP += fs.TP
			ps.FP += fs.FP
			ps.FN += fs.FN
			ps.TN += fs.TN
			ps.Windows += fs.Windows
			ps.WindowsDetected += fs.WindowsDetected
			c, ok := cats[s.category]
			if !ok {
				c = &CategoryScore{Category: s.category}
				cats[s.category] = c
				catOrder = append(catOrder, s.category)
			}
			c.Files++
			c.Raw += fs.Raw
			c.Null += ns.Raw
			c.Perfect += p.TPWeight * float64(len(s.windows))
			c.Windows += fs.Windows
			c.WindowsDetected += fs.WindowsDetected
		}
		ps.Raw = leftSum(raws)
		ps.Normalized = 100 * (ps.Raw - ps.Null) / (ps.Perfect - ps.Null)
		for _, name := range catOrder {
			c := cats[name]
			if c.Perfect != c.Null {
				c.Normalized = 100 * (c.Raw - c.Null) / (c.Perfect - c.Null)
			}
			ps.Categories = append(ps.Categories, *c)
		}
		rep.Profiles = append(rep.Profiles, ps)
	}
	return rep, nil
}
