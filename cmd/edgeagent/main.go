// Command edgeagent is an MQTT edge agent for sensor gateways: an embedded
// broker, per-sensor filters and anomaly detection, local history, a web view
// and durable forwarding of alerts upstream. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set by the linker (-X main.version=...).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "edgeagent:", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit status (health uses 1 for "not ready").
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the agent (embedded broker, pipeline, storage, HTTP)", runServe},
		{"simulate", "publish simulated sensor readings over MQTT", runSimulate},
		{"eval", "replay CSV series through the detectors and score them with NAB's method", runEval},
		{"bench", "load an agent over MQTT and report throughput, latency, CPU and memory", runBench},
		{"config", "config check FILE: validate a config and print the effective one", runConfig},
		{"passwd", "print a bcrypt hash for mqtt.users[].password_hash", runPasswd},
		{"health", "ask a running agent whether it is ready (exit 0) or not (exit 1)", runHealth},
		{"version", "print the version", runVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return errors.New("missing command")
		}
		return flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: edgeagent COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'edgeagent COMMAND --help' for a command's flags.")
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edgeagent %s\n\nflags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "edgeagent", version)
	return nil
}
