package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/edgeagent/edgeagent/agent/sim"
)

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("simulate", "simulate [--broker URL] [--sensors N] [--rate R] [--seed S] [--qos 0|1]", stderr)
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.QoS = byte(*qos)
	o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	return sim.Run(ctx, o)
}
