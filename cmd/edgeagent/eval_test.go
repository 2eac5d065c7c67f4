package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/eval"
	"github.com/edgeagent/edgeagent/storage"
)

// sharedDir is <repo>/../shared (or one level further up for a worktree);
// the test fails when the NAB corpus is missing.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
	for _, c := range []string{filepath.Join(dir, "..", "shared"), filepath.Join(dir, "..", "..", "shared")} {
		if _, err := os.Stat(filepath.Join(c, "nab", "labels", "combined_windows.json")); err == nil {
			return c
		}
	}
	t.Fatalf("the NAB corpus must sit beside the repository (%s)", filepath.Join(dir, "..", "shared", "nab"))
	return ""
}

// TestEval_agreesWithNabscore runs `edgeagent eval` with the auto detector
// on three NAB files and scores its results folder with nabscore.py: the
// normalised scores agree within 0.01.
func TestEval_agreesWithNabscore(t *testing.T) {
	shared := sharedDir(t)
	nab := filepath.Join(shared, "nab")
	files := []string{
		"realKnownCause/ec2_request_latency_system_failure.csv",
		"realAdExchange/exchange-3_cpc_results.csv",
		"artificialWithAnomaly/art_daily_jumpsdown.csv",
	}
	all, err := eval.LoadLabels(filepath.Join(nab, "labels", "combined_windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	sub := eval.Labels{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(nab, "data", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(data, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sub[f] = all[f]
	}
	labels := filepath.Join(tmp, "labels.json")
	if err := eval.WriteLabels(labels, sub); err != nil {
		t.Fatal(err)
	}
	out, goJSON := filepath.Join(tmp, "results"), filepath.Join(tmp, "go.json")
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"eval", "--data", data, "--labels", labels, "--out", out,
		"--detector", "auto", "--json", goJSON}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr.String())
	}
	t.Log(stdout.String())
	for _, want := range []string{"standard", "reward_low_FP_rate", "reward_low_FN_rate", "realKnownCause", "run time"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	pyJSON := filepath.Join(tmp, "py.json")
	cmd := exec.Command("python3", filepath.Join(shared, "tools", "nabscore.py"), filepath.Join(out, "auto"),
		"--nab", nab, "--data", data, "--labels", labels, "--quiet", "--json", pyJSON)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nabscore.py: %v\n%s", err, b)
	}
	var rep eval.Report
	var py struct {
		Detectors map[string]struct {
			Profiles map[string]struct {
				Normalized float64 `json:"normalized"`
			} `json:"profiles"`
		} `json:"detectors"`
	}
	for file, v := range map[string]any{goJSON: &rep, pyJSON: &py} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	if len(rep.Profiles) != 3 {
		t.Fatalf("%d profiles in the report", len(rep.Profiles))
	}
	for _, p := range rep.Profiles {
		want := py.Detectors["auto"].Profiles[p.Profile.Name].Normalized
		t.Logf("%s: edgeagent eval %.4f, nabscore.py %.4f", p.Profile.Name, p.Normalized, want)
		if math.Abs(p.Normalized-want) > 0.01 || want == 0 {
			t.Errorf("%s: edgeagent eval %.4f, nabscore.py %.4f", p.Profile.Name, p.Normalized, want)
		}
	}
}

func TestEval_configBacktestPrintsAlerts(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data", "boiler")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("timestamp,value\n")
	for i := range 600 {
		v := 50.0
		if i >= 400 && i < 420 {
			v = 95
		}
		fmt.Fprintf(&csv, "2026-01-05 %02d:%02d:00,%g\n", i/60, i%60, v)
	}
	if err := os.WriteFile(filepath.Join(data, "b1.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tmp, "edgeagent.yaml")
	if err := os.WriteFile(cfg, []byte("rules:\n  - name: hot\n    detectors:\n      - {type: threshold, max: 90}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"eval", "--data", filepath.Join(tmp, "data"), "--config", cfg}, &stdout, &stderr); err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	t.Log(out)
	if !strings.Contains(out, "2026-01-05 06:40:00") || !strings.Contains(out, "threshold") || strings.Count(out, "firing") != 1 {
		t.Errorf("want one firing threshold alert at 06:40 (reading 400):\n%s", out)
	}
}

// TestEval_fromDB stores a sensor's history in a real database file and
// backtests a threshold rule on it with --from-db.
func TestEval_fromDB(t *testing.T) {
	tmp := t.TempDir()
	path := filepath.Join(tmp, "edgeagent.db")
	db, err := storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	var rs []agent.Result
	for i := range 300 {
		v := 20.0
		if i >= 200 && i < 210 {
			v = 99
		}
		r := agent.Reading{Sensor: "boiler-1", Kind: "temperature", Value: v, Time: t0.Add(time.Duration(i) * 10 * time.Second)}
		rs = append(rs, agent.Result{Reading: r, Raw: v})
	}
	db.Write(rs, nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tmp, "edgeagent.yaml")
	if err := os.WriteFile(cfg, []byte("rules:\n  - name: boilers\n    match: {sensor: \"boiler-*\"}\n    detectors:\n      - {type: threshold, max: 90}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"eval", "--from-db", path, "--config", cfg}, &stdout, &stderr); err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	t.Log(out)
	want := t0.Add(2000 * time.Second).UTC().Format(eval.TimeLayout)
	if !strings.Contains(out, "replayed 1 series, 300 readings") || !strings.Contains(out, want) ||
		!strings.Contains(out, "temperature/boiler-1") || strings.Count(out, "firing") != 1 {
		t.Errorf("want 300 readings replayed and one firing alert at %s:\n%s", want, out)
	}
}
