//go:build tune

// Tuning tools for the auto detector, not tests: built only with
// `go test -tags tune -run TestDbg ./agent/eval` and driven by env vars.
package eval

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeagent/edgeagent/agent/anomaly"
)

func TestDbg(t *testing.T) {
	f := os.Getenv("DBG")
	if f == "" {
		t.Fatal("a tuning tool: set its env vars (see the function)")
	}
	rng := strings.Split(os.Getenv("RNG"), ":")
	lo, _ := strconv.Atoi(rng[0])
	hi, _ := strconv.Atoi(rng[1])
	ts, vs, err := ReadSeries(f)
	if err != nil {
		t.Fatal(err)
	}
	p := anomaly.DefaultAutoParams()
	setP(t, &p, os.Getenv("PP"))
	d, _ := anomaly.NewAuto(p)
	minS := 0.2
	if m := os.Getenv("MIN"); m != "" {
		minS, _ = strconv.ParseFloat(m, 64)
	}
	for i, v := range vs {
		s := d.Update(ts[i].UnixNano(), v)
		if i >= lo && i < hi && s >= minS {
			t.Logf("%d %g %.3f %s", i, v, s, d.AppendReason(nil))
		}
	}
}

func TestDbgFP(t *testing.T) {
	if os.Getenv("DBGFP") == "" {
		t.Fatal("a tuning tool: set its env vars (see the function)")
	}
	thr, _ := strconv.ParseFloat(os.Getenv("DBGFP"), 64)
	root := os.Getenv("CORPUS")
	if root == "" {
		root = filepath.Join(sharedDir(t), "nab")
	}
	c := loadCorpus(t, root)
	p := anomaly.DefaultAutoParams()
	setP(t, &p, os.Getenv("PP"))
	for k, name := range c.names {
		d, _ := anomaly.NewAuto(p)
		ws := c.labels[name]
		prob := min(len(c.values[k])*15/100, 750)
		first := make([]bool, len(ws))
		for i, v := range c.values[k] {
			s := d.Update(c.times[k][i].UnixNano(), v)
			if s < thr || i < prob {
				continue
			}
			in := ""
			for wi, w := range ws {
				if !c.times[k][i].Before(w.Start) && !c.times[k][i].After(w.End) {
					in = "TP "
					if !first[wi] {
						in = "FIRST "
						first[wi] = true
					}
				}
			}
			if in == "TP " {
				continue
			}
			t.Logf("%s%s %d %.3f %s", in, name, i, s, d.AppendReason(nil))
		}
	}
}

func TestCmp(t *testing.T) {
	if os.Getenv("CMP") == "" {
		t.Fatal("a tuning tool: set its env vars (see the function)")
	}
	root := os.Getenv("CORPUS")
	if root == "" {
		root = filepath.Join(sharedDir(t), "nab")
	}
	c := loadCorpus(t, root)
	a, b := anomaly.DefaultAutoParams(), anomaly.DefaultAutoParams()
	setP(t, &a, os.Getenv("PP"))
	setP(t, &b, os.Getenv("CMP"))
	ra, rb := c.eval(t, a), c.eval(t, b)
	pa, pb := ra.Profiles[0], rb.Profiles[0]
	t.Logf("std %.2f -> %.2f thr %.4f -> %.4f", pa.Normalized, pb.Normalized, pa.Threshold, pb.Threshold)
	for i := range pa.Files {
		fa, fb := pa.Files[i], pb.Files[i]
		if fa.Raw != fb.Raw {
			t.Logf("%-60s raw %+.3f  win %d->%d  FP %d->%d", fa.Name, fb.Raw-fa.Raw, fa.WindowsDetected, fb.WindowsDetected, fa.FP, fb.FP)
		}
	}
}

// TestGrid evaluates PP with each value of GRID="Name=v1:v2:..." (NAB and
// simulated corpus A).
func TestGrid(t *testing.T) {
	if os.Getenv("GRID") == "" {
		t.Fatal("a tuning tool: set its env vars (see the function)")
	}
	c := loadCorpus(t, filepath.Join(sharedDir(t), "nab"))
	sa := loadSims(t)
	k, vs, _ := strings.Cut(os.Getenv("GRID"), "=")
	for _, v := range strings.Split(vs, ":") {
		p := anomaly.DefaultAutoParams()
		setP(t, &p, os.Getenv("PP"))
		setP(t, &p, k+"="+v)
		r := c.eval(t, p)
		sStd, _ := sa.eval(t, p)
		t.Logf("%s=%s  NAB %.2f/%.2f/%.2f mean %.2f win %d FP %d  simA %.2f", k, v, r.Profiles[0].Normalized, r.Profiles[1].Normalized, r.Profiles[2].Normalized, objective(r), r.Profiles[0].WindowsDetected, r.Profiles[0].FP, sStd)
	}
}
