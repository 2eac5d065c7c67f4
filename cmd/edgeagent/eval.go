package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/eval"
)

// detectorTypes can be named by --detector to replay that detector alone.
var detectorTypes = []string{anomaly.TypeAuto, anomaly.TypeZScore, anomaly.TypeMAD, anomaly.TypeFlatline}

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", "eval --data DIR [--out RESULTS] [--labels FILE [--json FILE]] [--config FILE] [--detector NAME] [--alerts]", stderr)
	data := fs.String("data", "", "folder of timestamp,value CSV files, searched recursively (required)")
	out := fs.String("out", "", "write NAB-layout results to RESULTS/<detector>/<category>/<detector>_<file>.csv")
	labelsFile := fs.String("labels", "", "NAB combined_windows.json: fill the label column and score the run")
	cfgPath := fs.String("config", "", "agent config whose rules the replay runs (default: the built-in default rule)")
	detector := fs.String("detector", "edgeagent", "results name; a detector type (auto, zscore, mad, flatline) replays that detector alone with its defaults")
	showAlerts := fs.Bool("alerts", false, "print the alerts the rules would have raised (always with --config)")
	jsonOut := fs.String("json", "", "with --labels: also write the full score report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		fs.Usage()
		return errors.New("eval: --data is required")
	}
	rules, err := evalRules(*cfgPath, *detector)
	if err != nil {
		return err
	}
	var labels eval.Labels
	if *labelsFile != "" {
		all, err := eval.LoadLabels(*labelsFile)
		if err != nil {
			return err
		}
		// Score the files replayed: labels of files not under --data are dropped.
		names, err := eval.ListCSV(*data)
		if err != nil {
			return err
		}
		labels = eval.Labels{}
		for _, n := range names {
			if ws, ok := all[n]; ok {
				labels[n] = ws
			}
		}
		if len(labels) == 0 {
			return fmt.Errorf("eval: %s labels none of the files under %s", *labelsFile, *data)
		}
		if len(labels) < len(all) {
			fmt.Fprintf(stderr, "eval: scoring %d of the %d labelled files (the others are not under %s)\n", len(labels), len(all), *data)
		}
	}
	start := time.Now()
	rs, err := eval.Replay(ctx, eval.ReplayOptions{
		Data: *data, Out: *out, Detector: *detector, Labels: labels,
		NewStage: func() (agent.Stage, error) {
			// Replay sets every reading's arrival to its time, so the
			// engine never needs a wall clock.
			return anomaly.New(anomaly.Options{Rules: rules, Gateway: "eval"})
		},
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	rows := 0
	for _, r := range rs {
		rows += len(r.Times)
	}
	fmt.Fprintf(stdout, "replayed %d series, %d readings in %v (%.0f ns/reading on %d workers)\n",
		len(rs), rows, took.Round(time.Millisecond), float64(took.Nanoseconds())/float64(max(rows, 1)), evalWorkers())
	if *out != "" {
		fmt.Fprintf(stdout, "results in %s\n", *out)
	}
	if *cfgPath != "" || *showAlerts {
		fmt.Fprintln(stdout)
		eval.WriteAlerts(stdout, rs)
	}
	if labels != nil {
		rep, err := eval.Score(eval.SeriesOf(rs), labels, nil)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		eval.WriteTable(stdout, *detector, rep, took)
		if *jsonOut != "" {
			b, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return fmt.Errorf("eval: json: %w", err)
			}
			if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
				return fmt.Errorf("eval: %w", err)
			}
		}
	}
	return nil
}

func evalWorkers() int { return eval.DefaultWorkers() }

// evalRules returns the rules to replay: the config's, else the built-in
// default; a detector type as --detector replaces them by that detector alone.
func evalRules(cfgPath, detector string) ([]anomaly.Rule, error) {
	if slices.Contains(detectorTypes, detector) {
		if cfgPath != "" {
			return nil, fmt.Errorf("eval: --detector %s replays that detector alone; it cannot be combined with --config", detector)
		}
		return []anomaly.Rule{{Name: anomaly.DefaultRuleName, Detectors: []anomaly.DetectorSpec{{Type: detector}}}}, nil
	}
	if cfgPath == "" {
		return nil, nil
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	rules, err := anomaly.RulesFromConfig(cfg.Rules)
	if err != nil {
		return nil, fmt.Errorf("eval: %s: %w", cfgPath, err)
	}
	return rules, nil
}
