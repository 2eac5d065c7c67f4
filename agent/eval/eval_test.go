package eval

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// sharedDir finds <repo>/../shared (CI puts a copy of shared/ beside the
// clone). The test fails, not skips, when it is missing.
func sharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package")
		}
		dir = parent
	}
	// <repo>/../shared; a git worktree under <main>/../wt/<name> finds it
	// one level further up.
	var shared string
	for _, c := range []string{filepath.Join(dir, "..", "shared"), filepath.Join(dir, "..", "..", "shared")} {
		if _, err := os.Stat(filepath.Join(c, "nab", "labels", "combined_windows.json")); err == nil {
			shared = c
			break
		}
	}
	if shared == "" {
		t.Fatalf("the NAB corpus must sit beside the repository: no %s", filepath.Join(dir, "..", "shared", "nab"))
	}
	if _, err := os.Stat(filepath.Join(shared, "tools", "nabscore.py")); err != nil {
		t.Fatalf("the NAB scorer must sit beside the repository: %v", err)
	}
	return shared
}

// zStage is a simple causal detector for the cross-check: the |z| of each
// value against an exponentially weighted mean and variance, squashed to
// [0,1). It is deliberately not the production detector.
type zStage struct {
	n        int
	mean, vr float64
}

func (z *zStage) Process(r agent.Reading, res *agent.Result, alerts []agent.Alert) []agent.Alert {
	res.Reading = r
	z.n++
	if z.n == 1 {
		z.mean = r.Value
		return alerts
	}
	d := r.Value - z.mean
	sd := math.Sqrt(z.vr) + 1e-9
	zz := math.Abs(d) / sd
	if z.n > 10 {
		res.Score = 1 - math.Exp(-zz/4)
	}
	z.mean += 0.02 * d
	z.vr = 0.98 * (z.vr + 0.02*d*d)
	return alerts
}

func (z *zStage) Tick(time.Time, []agent.Alert) []agent.Alert { return nil }

var subset = []string{
	"artificialWithAnomaly/art_daily_jumpsup.csv",
	"realKnownCause/ambient_temperature_system_failure.csv",
	"realTraffic/speed_7578.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
	"artificialNoAnomaly/art_daily_no_noise.csv",
}

// copySubset copies the subset's data files into a fresh data folder and
// writes a labels file with only their windows.
func copySubset(t *testing.T, nab string, names []string) (data, labelsFile string, labels Labels) {
	t.Helper()
	all, err := LoadLabels(filepath.Join(nab, "labels", "combined_windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	data = filepath.Join(tmp, "data")
	labels = Labels{}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(nab, "data", n))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(data, n)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ws, ok := all[n]
		if !ok {
			t.Fatalf("%s not labelled", n)
		}
		labels[n] = ws
	}
	labelsFile = filepath.Join(tmp, "labels.json")
	if err := WriteLabels(labelsFile, labels); err != nil {
		t.Fatal(err)
	}
	return data, labelsFile, labels
}

type pyReport struct {
	Detectors map[string]struct {
		Profiles map[string]struct {
			Threshold  float64 `json:"threshold"`
			Raw        float64 `json:"raw_score"`
			Null       float64 `json:"null_raw_score"`
			Normalized float64 `json:"normalized"`
			TP         int     `json:"tp"`
			FP         int     `json:"fp"`
		} `json:"profiles"`
	} `json:"detectors"`
}

// TestScore_AgreesWithNabscore replays a NAB subset through a simple causal
// detector, scores it in Go and with ../shared/tools/nabscore.py, and
// requires the normalised scores to agree within 0.01 points.
func TestScore_AgreesWithNabscore(t *testing.T) {
	shared := sharedDir(t)
	nab := filepath.Join(shared, "nab")
	data, labelsFile, labels := copySubset(t, nab, subset)
	out := filepath.Join(t.TempDir(), "results")
	rs, err := Replay(context.Background(), ReplayOptions{
		Data: data, Out: out, Detector: "ztest", Labels: labels,
		NewStage: func() (agent.Stage, error) { return &zStage{}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(subset) {
		t.Fatalf("replayed %d series, want %d", len(rs), len(subset))
	}
	rep, err := Score(SeriesOf(rs), labels, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The results folder read back scores the same as the in-memory series.
	back, err := LoadResults(filepath.Join(out, "ztest"), "ztest")
	if err != nil {
		t.Fatal(err)
	}
	rep2, err := Score(back, labels, nil)
	if err != nil {
		t.Fatal(err)
	}

	jsonOut := filepath.Join(t.TempDir(), "py.json")
	cmd := exec.Command("python3", filepath.Join(shared, "tools", "nabscore.py"),
		filepath.Join(out, "ztest"), "--nab", nab, "--data", data, "--labels", labelsFile,
		"--quiet", "--json", jsonOut)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nabscore.py: %v\n%s", err, b)
	}
	b, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	var py pyReport
	if err := json.Unmarshal(b, &py); err != nil {
		t.Fatal(err)
	}
	pyDet, ok := py.Detectors["ztest"]
	if !ok {
		t.Fatalf("nabscore.py scored no detector ztest: %s", b)
	}
	for _, p := range rep.Profiles {
		want, ok := pyDet.Profiles[p.Profile.Name]
		if !ok {
			t.Fatalf("profile %s missing in nabscore.py output", p.Profile.Name)
		}
		t.Logf("%-20s go %.4f (t=%.6g raw %.4f null %.4f) python %.4f (t=%.6g raw %.4f null %.4f)",
			p.Profile.Name, p.Normalized, p.Threshold, p.Raw, p.Null, want.Normalized, want.Threshold, want.Raw, want.Null)
		if math.Abs(p.Normalized-want.Normalized) > 0.01 {
			t.Errorf("%s: normalised %.4f, nabscore.py %.4f", p.Profile.Name, p.Normalized, want.Normalized)
		}
		if math.Abs(p.Null-want.Null) > 1e-6 || p.TP != want.TP || p.FP != want.FP {
			t.Errorf("%s: null %v TP %d FP %d, nabscore.py null %v TP %d FP %d", p.Profile.Name, p.Null, p.TP, p.FP, want.Null, want.TP, want.FP)
		}
		if got := rep2.Profile(p.Profile.Name).Normalized; got != p.Normalized {
			t.Errorf("%s: results read back score %v, in memory %v", p.Profile.Name, got, p.Normalized)
		}
		// The score must be informative: neither null nor perfect.
		if p.Normalized <= 0 || p.Normalized >= 100 {
			t.Errorf("%s: normalised %v: the cross-check needs a detector between null and perfect", p.Profile.Name, p.Normalized)
		}
	}
}

func ts(i int) time.Time { return time.Date(2020, 1, 1, 0, 5*i, 0, 0, time.UTC) }

func oneFile(scores []float64, windows [][2]int) ([]Series, Labels) {
	times := make([]time.Time, len(scores))
	for i := range times {
		times[i] = ts(i)
	}
	var ws []Window
	for _, w := range windows {
		ws = append(ws, Window{Start: times[w[0]], End: times[w[1]]})
	}
	return []Series{{Name: "c/t.csv", Times: times, Scores: scores}}, Labels{"c/t.csv": ws}
}

// Cases from nabscore.py's self-test (NAB's own sweeper and scorer tests).
func TestSweep_knownAnswers(t *testing.T) {
	for _, c := range []struct {
		rows, want int
	}{{100, 15}, {4032, 604}, {22695, 750}, {5000, 750}} {
		if got := probation(c.rows); got != c.want {
			t.Errorf("probation(%d) = %d, want %d", c.rows, got, c.want)
		}
	}
	if got := scaledSigmoid(-1); math.Abs(got-0.9866142981514305) > 1e-15 {
		t.Errorf("sigmoid(-1) = %v", got)
	}
	std := DefaultProfiles()[0]
	score := func(at int, windows [][2]int, p Profile, th float64) float64 {
		sc := make([]float64, 100)
		if at >= 0 {
			sc[at] = 1
		}
		ss, ls := oneFile(sc, windows)
		sw, err := newSweep(ss[0].Name, ss[0].Times, ls["c/t.csv"], sc)
		if err != nil {
			t.Fatal(err)
		}
		return sw.score(p, th).Raw
	}
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	near("left edge", score(40, [][2]int{{40, 49}}, std, 0.5), 1)
	near("right edge", score(49, [][2]int{{40, 49}}, std, 0.5), scaledSigmoid(-0.1)/maxTP)
	near("missed, low FN", score(40, [][2]int{{40, 49}}, DefaultProfiles()[2], 1.5), -2)
	near("FP before window", score(20, [][2]int{{40, 49}}, std, 0.5), -0.11-1)
	near("FP after window", score(50, [][2]int{{40, 49}}, std, 0.5), -1+0.11*scaledSigmoid(1/9.0))
	near("probation ignored", score(5, nil, std, 0.5), 0)

	// The sweep: 0.3 and 0.2 tie, NAB keeps the higher threshold.
	sc := make([]float64, 100)
	sc[20], sc[21], sc[60], sc[90] = 0.3, 0.2, 0.5, 0.5
	ss, ls := oneFile(sc, [][2]int{{20, 29}, {60, 69}})
	rep, err := Score(ss, ls, []Profile{std})
	if err != nil {
		t.Fatal(err)
	}
	if th := rep.Profiles[0].Threshold; th != 0.3 {
		t.Errorf("threshold %v, want 0.3", th)
	}
	if _, err := Score(ss, Labels{"c/t.csv": {{Start: ts(0).Add(time.Second), End: ts(5)}}}, nil); err == nil {
		t.Error("a window limit that is not a row was accepted")
	}
	if _, err := Score(ss, Labels{"c/other.csv": nil}, nil); err == nil {
		t.Error("a labelled file without results was accepted")
	}
}
