package storage_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

// TestDB_runsMatchAModel writes readings with late and equal times, folding
// at random points, and checks every query against a plain sorted list:
// runs, their merges and the journal tail must read as one time-ordered
// history, equal times in commit order (newest first with desc).
func TestDB_runsMatchAModel(t *testing.T) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 7))
		db := mustOpen(t, "", storage.Options{Registerer: prometheus.NewRegistry(), FoldReadings: 1 << 30})
		type rec struct {
			ts time.Time
			v  float64
		}
		var model []rec // commit order
		now := 0
		for i := range 3000 {
			var ts int
			switch p := rng.IntN(100); {
			case p < 70: // in order
				now += 1 + rng.IntN(3)
				ts = now
			case p < 85: // same time as the newest
				ts = now
			default: // late, up to the whole history back
				ts = rng.IntN(now + 1)
			}
			at := t0.Add(time.Duration(ts) * time.Second)
			r := res("s", at, float64(i))
			if i == 2999 { // wait for the journal's commit of the last few
				r.Commit = agent.NewCommit(1)
			}
			db.Write([]agent.Result{r}, nil)
			if r.Commit != nil {
				if err := r.Commit.Wait(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			model = append(model, rec{at, float64(i)})
			if rng.IntN(200) == 0 {
				flush(t, db)
			}
			if i == 2990 {
				flush(t, db) // the last few stay in the journal
			}
		}
		slices.SortStableFunc(model, func(a, b rec) int { return a.ts.Compare(b.ts) })
		want := func(from, to time.Time, limit int, desc bool) []float64 {
			var out []float64
			for _, r := range model {
				if r.ts.Before(from) || (!to.IsZero() && !r.ts.Before(to)) {
					continue
				}
				out = append(out, r.v)
			}
			if desc {
				// equal times: newest commit first
				rev := make([]float64, 0, len(out))
				for i := len(out) - 1; i >= 0; i-- {
					rev = append(rev, out[i])
				}
				out = rev
			}
			if limit > 0 && len(out) > limit {
				out = out[:limit]
			}
			return out
		}
		end := t0.Add(time.Duration(now+1) * time.Second)
		for q := range 300 {
			from := t0.Add(time.Duration(rng.IntN(now+2)) * time.Second)
			to := t0.Add(time.Duration(rng.IntN(now+2)) * time.Second)
			if q%10 == 0 {
				from, to = time.Time{}, time.Time{}
			} else if to.Before(from) {
				from, to = to, from
			}
			limit := 0
			if q%3 == 0 {
				limit = 1 + rng.IntN(400)
			}
			desc := q%2 == 1
			got, err := db.Readings("s", from, to, limit, desc)
			if err != nil {
				t.Fatal(err)
			}
			if w := want(from, to, limit, desc); !slices.Equal(values(got), w) {
				t.Fatalf("seed %d: Readings(%v, %v, limit %d, desc %v): %d readings, want %d\ngot  %v\nwant %v",
					seed, from.Sub(t0), to.Sub(t0), limit, desc, len(got), len(w), head(values(got)), head(w))
			}
		}
		latest, err := db.Latest()
		if err != nil {
			t.Fatal(err)
		}
		if w := want(time.Time{}, end, 1, true); latest["s"].Value != w[0] {
			t.Errorf("seed %d: Latest = %v, want %v", seed, latest["s"].Value, w[0])
		}
	}
}

func head(v []float64) []float64 { return v[:min(len(v), 20)] }
