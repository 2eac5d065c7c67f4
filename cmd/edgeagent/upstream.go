package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/upstream"
	"github.com/edgeagent/edgeagent/storage"
)

// storageOutbox adapts *storage.DB to upstream.Outbox: only OutboxPeek's
// entry type differs (storage may not import agent/upstream).
type storageOutbox struct{ *storage.DB }

func (s storageOutbox) OutboxPeek(after uint64, n int) ([]upstream.Entry, error) {
	es, err := s.DB.OutboxPeek(after, n)
	out := make([]upstream.Entry, len(es))
	for i, e := range es {
		out[i] = upstream.Entry{Seq: e.Seq, Lane: e.Lane, Sensor: e.Sensor, Payload: e.Payload, Created: e.Created}
	}
	return out, err
}

// newUplink builds the uplink from config, or returns nil when upstream.url
// is empty. Storage enforces outbox_max_bytes/outbox_max_age at enqueue time
// (it owns the outbox), so the uplink's own bounds stay off.
func newUplink(cfg config.Config, db *storage.DB, log *slog.Logger, reg prometheus.Registerer) (*upstream.Uplink, error) {
	if cfg.Upstream.URL == "" {
		return nil, nil
	}
	opts, err := uplinkOptions(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	return upstream.New(storageOutbox{db}, opts)
}

// uplinkOptions copies the upstream config into the uplink's options.
func uplinkOptions(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (upstream.Options, error) {
	c := cfg.Upstream
	password, err := readSecret(c.PasswordFile, "upstream.password_file")
	if err != nil {
		return upstream.Options{}, err
	}
	return upstream.Options{
		URL: c.URL, Gateway: cfg.GatewayID, ClientID: c.ClientID,
		Username: c.Username, Password: password,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		TopicPrefix: c.TopicPrefix, Forward: c.Forward,
		KeepAlive: c.KeepAlive, ConnectTimeout: c.ConnectTimeout, AckTimeout: c.AckTimeout,
		Window: c.MaxInflight, MinBackoff: c.BackoffMin, MaxBackoff: c.BackoffMax,
		Logger: log, Registerer: reg,
	}, nil
}
