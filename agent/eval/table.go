package eval

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// WriteTable prints rep as the normalised score per profile, then per
// category (normalised against the null detector on that category), then
// the run time when took > 0.
func WriteTable(w io.Writer, name string, rep *Report, took time.Duration) {
	fmt.Fprintf(w, "%s: %d files, NAB v1.1 scoring\n", name, rep.Files)
	fmt.Fprintf(w, "  %-20s %10s %10s %9s %6s %6s\n", "profile", "normalized", "threshold", "windows", "FP", "TP")
	for _, p := range rep.Profiles {
		fmt.Fprintf(w, "  %-20s %10.2f %10.4f %4d/%-4d %6d %6d\n", p.Profile.Name, p.Normalized, p.Threshold,
			p.WindowsDetected, p.Windows, p.FP, p.TP)
	}
	if len(rep.Profiles) == 0 {
		return
	}
	head := fmt.Sprintf("  %-24s", "category")
	for _, p := range rep.Profiles {
		head += fmt.Sprintf(" %20s", p.Profile.Name)
	}
	fmt.Fprintln(w, "\n"+head+"  windows")
	for i, c := range rep.Profiles[0].Categories {
		line := fmt.Sprintf("  %-24s", c.Category)
		for _, p := range rep.Profiles {
			cs := p.Categories[i]
			if cs.Perfect == cs.Null {
				line += fmt.Sprintf(" %20s", "-")
			} else {
				line += fmt.Sprintf(" %20.2f", cs.Normalized)
			}
		}
		fmt.Fprintf(w, "%s  %d/%d\n", line, c.WindowsDetected, c.Windows)
	}
	if took > 0 {
		fmt.Fprintf(w, "\nrun time %v\n", took.Round(time.Millisecond))
	}
}

// WriteAlerts prints the firing and flapping alerts of rs as a table: time,
// series, detector, reason.
func WriteAlerts(w io.Writer, rs []Replayed) int {
	n := 0
	for _, r := range rs {
		for _, a := range r.Alerts {
			if a.State != agent.AlertFiring && a.State != agent.AlertFlapping {
				continue
			}
			if n == 0 {
				fmt.Fprintf(w, "%-20s %-30s %-10s %-9s %s\n", "time", "series", "detector", "state", "reason")
			}
			n++
			fmt.Fprintf(w, "%-20s %-30s %-10s %-9s %s\n", a.StartedAt.UTC().Format(TimeLayout),
				strings.TrimSuffix(r.Name, ".csv"), a.Detector, a.State, a.Reason)
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "no alerts")
	}
	return n
}
