package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
)

func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: edgeagent config check FILE")
		return errors.New("config: expected 'check FILE'")
	}
	fs := newFlagSet("config check", "config check [--quiet] FILE", stderr)
	quiet := fs.Bool("quiet", false, "print nothing when the config is valid")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("config check: expected one FILE")
	}
	cfg, err := loadConfig(fs.Arg(0))
	if err != nil {
		return err
	}
	if *quiet {
		return nil
	}
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is valid; effective configuration:\n%s", fs.Arg(0), b)
	return nil
}

// loadConfig loads and validates a config file, including what only the
// components can check (topic template syntax, detector parameters), so that
// `config check` and `serve` refuse exactly the same files.
func loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return config.Config{}, err
	}
	if _, err := ingest.New(ingestOptions(cfg.Ingest)); err != nil {
		return config.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := anomaly.RulesFromConfig(cfg.Rules); err != nil {
		return config.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}
