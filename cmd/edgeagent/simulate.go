package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edgeagent/edgeagent/agent/sim"
)

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", "simulate [--broker URL] [--sensors N] [--rate R] [--seed S] [--qos 0|1] | simulate --export DIR [--seed S] [--sensors N] [--days D]", stderr)
	o := sim.Options{}
	fs.StringVar(&o.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	fs.IntVar(&o.Sensors, "sensors", 20, "number of simulated sensors")
	fs.Float64Var(&o.Rate, "rate", 1, "readings per second per sensor")
	fs.Uint64Var(&o.Seed, "seed", 1, "random seed (same seed, same readings)")
	fs.StringVar(&o.Prefix, "prefix", "sensors", "topic prefix: PREFIX/{sensor}/{kind}")
	fs.StringVar(&o.Username, "username", "", "MQTT username")
	fs.StringVar(&o.Password, "password", "", "MQTT password")
	fs.Float64Var(&o.AnomalyRate, "anomaly-rate", 0, "chance per reading that an anomaly starts (0: 1/3000, <0: none)")
	qos := fs.Uint("qos", 0, "QoS of the publishes (0 or 1)")
	export := fs.String("export", "", "write a labelled corpus in NAB's layout to DIR instead of publishing")
	days := fs.Float64("days", 7, "with --export: days of readings per sensor")
	every := fs.Duration("every", 2*time.Minute, "with --export: sampling interval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *export != "" {
		inj, err := sim.Export(sim.ExportOptions{Dir: *export, Seed: o.Seed, Sensors: o.Sensors, Days: *days, Every: *every})
		if err != nil {
			return err
		}
		n := 0
		for _, in := range inj {
			n += len(in)
		}
		fmt.Fprintf(stdout, "wrote %d series with %d labelled anomalies to %s\n", len(inj), n, *export)
		return nil
	}
	o.QoS = byte(*qos)
	o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	return sim.Run(ctx, o)
}
