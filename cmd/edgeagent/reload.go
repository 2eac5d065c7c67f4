package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
	"github.com/edgeagent/edgeagent/agent/upstream"
	"github.com/edgeagent/edgeagent/broker"
)

// reloadReport says what a SIGHUP reload did with each changed key.
type reloadReport struct {
	Applied        []string // changed keys now in effect
	RestartNeeded  []string // changed keys that take effect on the next restart
	NothingChanged bool
}

// liveKeys are the keys a reload applies without a restart, by key path
// prefix. Everything else that changed is reported as needing a restart.
// Rules swap on each shard's goroutine (Pipeline.Reconfigure); the uplink is
// replaced by a successor draining the same durable outbox. Readings keep
// flowing through both.
var liveKeys = []string{"log.level", "mqtt.allow_anonymous", "mqtt.users", "rules",
	"upstream.url", "upstream.client_id", "upstream.username", "upstream.password_file",
	"upstream.ca_file", "upstream.cert_file", "upstream.key_file", "upstream.topic_prefix",
	"upstream.keepalive", "upstream.connect_timeout", "upstream.ack_timeout",
	"upstream.max_inflight", "upstream.backoff_min", "upstream.backoff_max", "upstream.forward"}

// reload re-reads the config at path and applies what can change live. A
// config that does not load or validate is rejected with an error that says
// why; the running config then stays exactly as it was. level is the
// process's log level (slog.LevelVar) and changes in place.
func (a *App) reload(path string, level *slog.LevelVar) (reloadReport, error) {
	next, err := config.Load(path)
	if err != nil {
		return reloadReport{}, err
	}
	// The same deeper checks Start makes, so a reload never accepts a config
	// the next restart would refuse.
	if _, err := ingest.New(ingestOptions(next.Ingest)); err != nil {
		return reloadReport{}, fmt.Errorf("%s: %w", path, err)
	}
	rules, err := anomaly.RulesFromConfig(next.Rules)
	if err == nil {
		_, err = anomaly.New(anomaly.Options{Rules: rules, Gateway: next.GatewayID})
	}
	if err != nil {
		return reloadReport{}, fmt.Errorf("%s: %w", path, err)
	}
	var rep reloadReport
	changed := diffKeys(a.cfg, next)
	if len(changed) == 0 {
		rep.NothingChanged = true
		return rep, nil
	}
	// The uplink can be re-pointed, not switched on or off: storage writes
	// the outbox only when an uplink was configured at start.
	uplinkLive := a.cfg.Upstream.URL != "" && next.Upstream.URL != ""
	var successor *upstream.Uplink
	for _, k := range changed {
		if strings.HasPrefix(k, "upstream.") && uplinkLive && isLive(k, true) && successor == nil {
			opts, err := uplinkOptions(next, a.log.With("component", "upstream"), nil)
			if err == nil {
				successor, err = a.uplink.Load().Successor(opts)
			}
			if err != nil {
				return reloadReport{}, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	for _, k := range changed {
		if isLive(k, a.cfg.MQTT.Embedded) && (!strings.HasPrefix(k, "upstream.") || uplinkLive) {
			rep.Applied = append(rep.Applied, k)
		} else {
			rep.RestartNeeded = append(rep.RestartNeeded, k)
		}
	}
	if slices.Contains(rep.Applied, "log.level") {
		var l slog.Level
		_ = l.UnmarshalText([]byte(next.Log.Level)) // validated by config.Load
		level.Set(l)
		a.cfg.Log.Level = next.Log.Level
	}
	if a.broker != nil && (slices.Contains(rep.Applied, "mqtt.users") || slices.Contains(rep.Applied, "mqtt.allow_anonymous")) {
		a.broker.SetUsers(next.MQTT.AllowAnonymous, brokerUsers(next.MQTT.Users))
		a.cfg.MQTT.AllowAnonymous, a.cfg.MQTT.Users = next.MQTT.AllowAnonymous, next.MQTT.Users
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if slices.Contains(rep.Applied, "rules") {
		err := a.pipeline.Reconfigure(ctx, func(st agent.Stage, alerts []agent.Alert) ([]agent.Alert, error) {
			return st.(*anomaly.Engine).SetRules(rules, time.Now(), alerts)
		})
		if err != nil { // checked above: only a stopping pipeline gets here
			return rep, fmt.Errorf("rules: %w", err)
		}
		a.cfg.Rules = next.Rules
	}
	if successor != nil {
		old := a.uplink.Load()
		if err := old.Close(ctx); err != nil {
			a.log.Warn("old uplink did not stop in time", "err", err)
		}
		successor.Start(context.Background())
		a.uplink.Store(successor)
		a.cfg.Upstream = next.Upstream
	}
	return rep, nil
}

// isLive reports whether a changed key applies on reload. Broker accounts
// are live only for the embedded broker.
func isLive(key string, embedded bool) bool {
	for _, p := range liveKeys {
		if key == p || strings.HasPrefix(key, p+".") || strings.HasPrefix(key, p+"[") {
			return embedded || !strings.HasPrefix(p, "mqtt.")
		}
	}
	return false
}

func brokerUsers(us []config.MQTTUser) []broker.User {
	users := make([]broker.User, len(us))
	for i, u := range us {
		users[i] = broker.User{Username: u.Username, PasswordHash: u.PasswordHash, Publish: u.Publish, Subscribe: u.Subscribe}
	}
	return users
}

// diffKeys lists the YAML key paths whose values differ between a and b, in
// field order: "mqtt.listen", "log.level". Lists and maps compare whole
// ("mqtt.users", "rules").
func diffKeys(a, b config.Config) []string {
	var out []string
	diffValue("", reflect.ValueOf(a), reflect.ValueOf(b), &out)
	return out
}

func diffValue(prefix string, a, b reflect.Value, out *[]string) {
	if a.Kind() != reflect.Struct {
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, prefix)
		}
		return
	}
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if prefix != "" {
			name = prefix + "." + name
		}
		diffValue(name, a.Field(i), b.Field(i), out)
	}
}

// logReload writes the outcome of a reload to the journal.
func logReload(log *slog.Logger, path string, rep reloadReport, err error) {
	switch {
	case err != nil:
		log.Error("config reload rejected; the running config stays", "path", path, "err", err)
	case rep.NothingChanged:
		log.Info("config reloaded: nothing changed", "path", path)
	default:
		if len(rep.Applied) > 0 {
			log.Info("config reloaded", "path", path, "applied", strings.Join(rep.Applied, ","))
		}
		if len(rep.RestartNeeded) > 0 {
			log.Warn("config changes need a restart (systemctl restart edgeagent); running with the old values",
				"path", path, "restart_needed", strings.Join(rep.RestartNeeded, ","))
		}
	}
}
