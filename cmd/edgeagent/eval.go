package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/eval"
	"github.com/edgeagent/edgeagent/storage"
)

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", "eval (--data DIR [--labels FILE [--json FILE]] | --from-db FILE [--sensor ID] [--since D]) [--out RESULTS] [--config FILE] [--detector NAME] [--alerts]", stderr)
	data := fs.String("data", "", "folder of timestamp,value CSV files, searched recursively")
	out := fs.String("out", "", "write NAB-layout results to RESULTS/<detector>/<category>/<detector>_<file>.csv")
	labelsFile := fs.String("labels", "", "NAB combined_windows.json: fill the label column and score the run")
	cfgPath := fs.String("config", "", "agent config whose rules the replay runs (default: the built-in default rule)")
	detector := fs.String("detector", "edgeagent", "results name; a detector type (auto, zscore, mad, flatline) replays that detector alone with its defaults")
	showAlerts := fs.Bool("alerts", false, "print the alerts the rules would have raised (always with --config)")
	jsonOut := fs.String("json", "", "with --labels: also write the full score report as JSON to this file")
	fromDB := fs.String("from-db", "", "replay the stored history of the agent's database FILE instead of --data (stop the agent first, or copy the file)")
	sensor := fs.String("sensor", "", "with --from-db: the sensor to replay (default: every sensor)")
	since := fs.Duration("since", 0, "with --from-db: only readings newer than this (default: all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*data == "") == (*fromDB == "") {
		fs.Usage()
		return errors.New("eval: give exactly one of --data and --from-db")
	}
	rules, err := evalRules(*cfgPath, *detector)
	if err != nil {
		return err
	}
	var inputs []eval.Input
	if *fromDB != "" {
		if *labelsFile != "" {
			return errors.New("eval: --labels scores CSV replays (--data), not --from-db")
		}
		if inputs, err = dbInputs(*fromDB, *sensor, *since); err != nil {
			return err
		}
		*showAlerts = true
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
		Data: *data, Inputs: inputs, Out: *out, Detector: *detector, Labels: labels,
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
	fmt.Fprintf(stdout, "replayed %d series, %d readings in %v (wall time on %d workers, CSV reading and writing included)\n",
		len(rs), rows, took.Round(time.Millisecond), eval.DefaultWorkers())
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

// evalRules returns the rules to replay: the config's, else the built-in
// default; a detector type as --detector replaces them by that detector alone.
func evalRules(cfgPath, detector string) ([]anomaly.Rule, error) {
	// These detector types can be named by --detector to run alone.
	alone := []string{anomaly.TypeAuto, anomaly.TypeZScore, anomaly.TypeMAD, anomaly.TypeFlatline}
	if slices.Contains(alone, detector) {
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

// dbInputs reads the stored history of one sensor (or of every sensor) from
// the agent's database. Each series is replayed under its sensor id and kind,
// so configured rules match as they do live; values are the raw readings
// (before filters), as the live engine saw them.
func dbInputs(path, sensor string, since time.Duration) ([]eval.Input, error) {
	size := int64(0)
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("eval: --from-db: %w", err)
	} else {
		size = st.Size()
	}
	// Retention must not trim what we came to read: keep everything.
	db, err := storage.Open(path, storage.Options{
		RawRetention: 100 * 365 * 24 * time.Hour, RollupRetention: 100 * 365 * 24 * time.Hour,
		MaxRawPerSensor: -1, MaxBytes: max(256<<20, 4*size),
	})
	if err != nil {
		return nil, fmt.Errorf("eval: --from-db: %w", err)
	}
	defer db.Close()
	sensors := []string{sensor}
	if sensor == "" {
		latest, err := db.Latest()
		if err != nil {
			return nil, fmt.Errorf("eval: --from-db: %w", err)
		}
		sensors = slices.Sorted(maps.Keys(latest))
	}
	var from time.Time
	if since > 0 {
		from = time.Now().Add(-since)
	}
	to := time.Now().Add(100 * 365 * 24 * time.Hour)
	var out []eval.Input
	for _, id := range sensors {
		rs, err := db.Results(id, from, to, 0, false)
		if err != nil {
			return nil, fmt.Errorf("eval: --from-db: %w", err)
		}
		if len(rs) == 0 {
			continue
		}
		in := eval.Input{Name: id + ".csv", Sensor: id, Kind: rs[0].Kind}
		if rs[0].Kind != "" {
			in.Name = rs[0].Kind + "/" + id + ".csv"
		}
		for _, r := range rs {
			in.Times = append(in.Times, r.Time)
			in.Values = append(in.Values, r.Raw)
		}
		out = append(out, in)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("eval: --from-db %s: no stored readings (sensor %q)", path, sensor)
	}
	return out, nil
}
