package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/anomaly"
	"github.com/edgeagent/edgeagent/agent/api"
	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/ingest"
	"github.com/edgeagent/edgeagent/agent/sim"
	"github.com/edgeagent/edgeagent/agent/upstream"
	"github.com/edgeagent/edgeagent/broker"
	"github.com/edgeagent/edgeagent/cmd/edgeagent/internal/sdnotify"
	"github.com/edgeagent/edgeagent/storage"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve --config FILE [--simulate N] [--reset-db]", stderr)
	cfgPath := fs.String("config", "/etc/edgeagent/edgeagent.yaml", "config file")
	simulate := fs.Int("simulate", 0, "also run N simulated sensors publishing to the embedded broker")
	simRate := fs.Float64("simulate-rate", 1, "readings per second per simulated sensor")
	resetDB := fs.Bool("reset-db", false, "move an unreadable database aside and start a new one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	logger := newLeveledLogger(cfg.Log, level, stderr)
	if env := setCPUs(cfg.CPUs); env != "" {
		logger.Info("GOMAXPROCS from the environment overrides cpus", "GOMAXPROCS", env, "cpus", cfg.CPUs)
	}
	notifier := sdnotify.FromEnv()
	watchdog, err := sdnotify.WatchdogInterval()
	if err != nil {
		logger.Warn("systemd watchdog off", "err", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before Start: an early reload is not fatal
	defer signal.Stop(hup)

	app := NewApp(cfg, AppOptions{Logger: logger, Simulate: *simulate, SimulateRate: *simRate, ResetDB: *resetDB})
	if err := startExtended(ctx, app, notifier); err != nil {
		return errors.Join(err, app.Close())
	}
	status := newStatusLine(app.Registry(), cfg.Upstream.URL != "")
	if err := notifier.Ready("started: " + status.String()); err != nil {
		logger.Warn("sd_notify READY", "err", err)
	}
	loopCtx, stopLoop := context.WithCancel(ctx)
	var loop sync.WaitGroup
	loop.Go(func() {
		sdnotify.Loop(loopCtx, sdnotify.LoopOptions{
			Notifier: notifier, Timeout: watchdog,
			Healthy: func() error { return app.progressing(stallFor(watchdog)) },
			Status:  status.String, StatusInterval: statusEvery(watchdog),
			Logger: logger.With("component", "watchdog"),
		})
	})
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-hup:
			_ = notifier.Reloading()
			rep, err := app.reload(*cfgPath, level)
			logReload(logger, *cfgPath, rep, err)
			_ = notifier.Ready("")
		}
	}
	logger.Info("shutting down")
	_ = notifier.Stopping()
	stopLoop()
	loop.Wait()
	return app.Close()
}

// setCPUs applies the config key cpus, how many CPUs run the agent's Go code
// at once (GOMAXPROCS), unless the GOMAXPROCS environment variable is set:
// then it returns that. 0 keeps Go's default: every CPU, or the cgroup's CPU
// quota. The default is one: at max rate on two CPUs shared with the load
// generator, two cost a fifth more CPU a reading, while the bare broker,
// which hands nothing between goroutines, costs the same with either
// (docs/performance.md, round 12).
func setCPUs(cpus int) (env string) {
	if env = os.Getenv("GOMAXPROCS"); env == "" && cpus > 0 {
		runtime.GOMAXPROCS(cpus)
	}
	return env
}

// startExtended runs app.Start while asking systemd for more time than
// TimeoutStartSec, for at most 10 minutes. After a crash or a power cut
// the database's open reads the whole file to rebuild its free page list
// (docs/storage.md): 4 s for a full 256 MiB file on this machine's disk, and
// many times that on an SD card or with a bigger max_bytes.
func startExtended(ctx context.Context, app *App, notifier *sdnotify.Notifier) error {
	extendCtx, stop := context.WithTimeout(ctx, 10*time.Minute)
	var extending sync.WaitGroup
	extending.Go(func() { notifier.ExtendWhile(extendCtx, 20*time.Second, time.Minute) })
	defer extending.Wait()
	defer stop()
	return app.Start(ctx)
}

// newLeveledLogger sets level from the config and returns a logger that
// follows level, so a reload can change it in place.
func newLeveledLogger(c config.LogConfig, level *slog.LevelVar, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	level.Set(l)
	ho := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// AppOptions are the process-level settings of an App that are not in the config file.
type AppOptions struct {
	Logger       *slog.Logger
	Simulate     int     // simulated sensors publishing to the embedded broker
	SimulateRate float64 // readings per second per simulated sensor
	ResetDB      bool
	// ShutdownTimeout bounds Close; zero means 10s.
	ShutdownTimeout time.Duration
}

// App is a running agent: every component, started in dependency order and
// stopped in reverse.
type App struct {
	cfg  config.Config
	opts AppOptions
	log  *slog.Logger
	reg  *prometheus.Registry

	store      *storage.DB
	uplink     atomic.Pointer[upstream.Uplink] // nil without upstream.url; a reload swaps it
	pipeline   *agent.Pipeline
	intake     *agent.Intake
	decoder    *ingest.Decoder
	broker     *broker.Broker
	external   *broker.External
	api        *api.Server
	hub        *api.Hub // the live stream: a pipeline Observer, served by api
	http       *http.Server
	httpLn     net.Listener
	simStop    context.CancelFunc
	statusStop context.CancelFunc
	bg         sync.WaitGroup
	started    time.Time
}

// NewApp returns an App for cfg; nothing runs until Start.
func NewApp(cfg config.Config, opts AppOptions) *App {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &App{cfg: cfg, opts: opts, log: opts.Logger, reg: reg}
}

// Registry is the App's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Start opens storage, starts the pipeline, the broker (or the external
// subscriber), the HTTP server and the simulator, and returns once every
// listener is bound. On error the caller must still call Close.
func (a *App) Start(ctx context.Context) error {
	a.started = time.Now()
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	dbPath := cfg.Storage.Path(cfg.DataDir)
	if a.opts.ResetDB {
		if moved, err := storage.ResetFile(dbPath); err != nil {
			return err
		} else if moved != "" {
			a.log.Warn("database moved aside", "path", dbPath, "moved_to", moved)
		}
	}
	var err error
	a.store, err = storage.Open(dbPath, storage.Options{
		CommitInterval:   cfg.Storage.CommitInterval,
		MaxBatch:         cfg.Storage.MaxBatch,
		MaxPendingAlerts: cfg.Storage.MaxPendingAlerts,
		RawRetention:     cfg.Storage.RawRetention,
		RollupRetention:  cfg.Storage.RollupRetention,
		MaxRawPerSensor:  cfg.Storage.MaxRawPerSensor,
		MaxBytes:         int64(cfg.Storage.MaxBytes),
		Outbox:           cfg.Upstream.URL != "",
		OutboxMaxBytes:   int64(cfg.Upstream.OutboxMaxBytes),
		OutboxMaxAge:     cfg.Upstream.OutboxMaxAge,
		Gateway:          cfg.GatewayID,
		Logger:           a.log, // storage adds component=storage
		Registerer:       a.reg,
	})
	if err != nil {
		return err
	}
	// The uplink drains what a previous run left in the outbox at once.
	uplink, err := newUplink(cfg, a.store, a.log.With("component", "upstream"), a.reg)
	if err != nil {
		return err
	}
	if uplink != nil {
		uplink.Start(context.Background())
		a.uplink.Store(uplink)
	}

	rules, err := anomaly.RulesFromConfig(cfg.Rules)
	if err != nil {
		return err
	}
	engineMetrics := anomaly.NewMetrics(a.reg)
	engineOpts := anomaly.Options{Rules: rules, Gateway: cfg.GatewayID, Metrics: engineMetrics, Devices: anomaly.NewDevices()}
	if _, err := anomaly.New(engineOpts); err != nil {
		return err
	}
	a.hub = api.NewHub(api.HubOptions{
		Buffer: cfg.HTTP.WSBuffer, DefaultRate: cfg.HTTP.WSRate, MaxRate: cfg.HTTP.WSMaxRate,
		OriginPatterns: api.OriginHosts(cfg.HTTP.CORSOrigins),
		Logger:         a.log.With("component", "ws"), Registerer: a.reg,
	})
	a.pipeline = agent.NewPipeline(agent.PipelineOptions{
		Shards:     cfg.Pipeline.Shards,
		QueueSize:  cfg.Pipeline.QueueSize,
		MaxSensors: cfg.Ingest.MaxSensors,
		NewStage: func(int) agent.Stage {
			e, _ := anomaly.New(engineOpts) // checked above: same options, same result
			return e
		},
		Store:            a.store,
		SnapshotInterval: cfg.Storage.SnapshotInterval,
		SaveState:        a.store.SaveState,
		Observers:        []agent.Observer{a.hub},
		Gateway:          cfg.GatewayID,
		Logger:           a.log.With("component", "pipeline"),
		Registerer:       a.reg,
	})
	// A state that no longer fits (its rule or the detector changed) only
	// makes that sensor learn afresh; the others are still restored.
	restored, fresh := 0, 0
	err = a.store.LoadState(func(sensor string, state []byte) error {
		if err := a.pipeline.Restore(sensor, state); err != nil {
			fresh++
			a.log.Debug("detector state not restored", "sensor", sensor, "err", err)
			return nil
		}
		restored++
		return nil
	})
	if err != nil {
		a.log.Warn("detector state not read", "err", err)
	}
	if restored+fresh > 0 {
		a.log.Info("detector state restored", "sensors", restored, "starting_fresh", fresh)
	}
	a.pipeline.Start()

	dec, err := ingest.New(ingestOptions(cfg.Ingest))
	if err != nil {
		return err
	}
	a.decoder = dec
	registerIngestMetrics(a.reg, dec)
	for _, r := range ingest.Reasons {
		a.pipeline.Metrics().Counted(string(r))
	}
	a.intake = agent.NewIntake(a.pipeline, dec, cfg.MQTT.AckTimeout)
	// A retained message is a replay (last-known state, agent.FlagRetained)
	// only when a subscription delivers it: from an external broker. The
	// embedded broker hands over client publishes, which are always fresh,
	// even with the retain flag (ESPHome retains every state).
	replays := !cfg.MQTT.Embedded
	handler := func(ctx context.Context, m broker.Message) (broker.Pending, error) {
		d, err := a.intake.Submit(ctx, agent.Message{
			Topic: m.Topic, Payload: m.Payload, ClientID: m.ClientID,
			Durable: m.QoS > 0, Retained: m.Retained && replays,
		})
		if d == nil { // not a typed nil in the interface
			return nil, err
		}
		return d, err
	}

	if cfg.MQTT.Embedded {
		a.broker, err = broker.New(brokerOptions(cfg.MQTT, handler, a.log, a.reg))
		if err != nil {
			return err
		}
		if err := a.broker.Start(ctx); err != nil {
			return err
		}
	} else {
		password, err := readSecret(cfg.MQTT.External.PasswordFile, "mqtt.external.password_file")
		if err != nil {
			return err
		}
		clientID := cfg.MQTT.External.ClientID
		if clientID == "" {
			clientID = "edgeagent-" + cfg.GatewayID
		}
		a.external, err = broker.NewExternal(broker.ExternalOptions{
			URL: cfg.MQTT.External.URL, ClientID: clientID, Username: cfg.MQTT.External.Username,
			Password: password, Topics: cfg.MQTT.External.Topics, QoS: byte(cfg.MQTT.External.QoS),
			AckTimeout: cfg.MQTT.AckTimeout,
			Handler:    handler, Logger: a.log.With("component", "external"), Registerer: a.reg,
		})
		if err != nil {
			return err
		}
		if err := a.external.Start(ctx); err != nil {
			return err
		}
	}

	token, tokenSrc, err := api.ResolveToken(cfg.HTTP.TokenFile, cfg.DataDir, cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	if token != "" && cfg.HTTP.Listen != "" {
		a.log.Info("http api token required", "token_file", tokenSrc)
	}
	a.api = api.New(api.Options{
		Checks:     a.readyChecks(),
		Notes:      a.readyNotes(),
		Gatherer:   a.reg,
		Registerer: a.reg,
		Logger:     a.log.With("component", "http"),
		Gateway:    cfg.GatewayID,
		Version:    version,
		Started:    a.started,
		Sensors:    a.pipeline,
		History:    a.store,
		Rollups: func(sensor string, from, to time.Time, limit int) ([]api.Rollup, error) {
			rs, err := a.store.Rollups(sensor, from, to, limit)
			out := make([]api.Rollup, len(rs))
			for i, r := range rs {
				out[i] = api.Rollup{Start: r.Start, Count: r.Count, Min: r.Min, Max: r.Max, Mean: r.Mean, Last: r.Last}
			}
			return out, err
		},
		Alerts: api.AlertsFunc(func(_ context.Context, q api.AlertQuery) ([]agent.Alert, string, error) {
			return a.store.Alerts(storage.AlertQuery{Sensor: q.Sensor, State: string(q.State), Since: q.Since, Limit: q.Limit, Cursor: q.Cursor})
		}),
		Decoder:  dec,
		Ingester: a.intake,
		DetectorState: func(st agent.Stage, sensor string) []api.DetectorView {
			e, ok := st.(*anomaly.Engine)
			if !ok {
				return nil
			}
			ss, ok := e.Inspect(sensor)
			if !ok {
				return nil
			}
			out := make([]api.DetectorView, len(ss.Detectors))
			for i, d := range ss.Detectors {
				out[i] = api.DetectorView{Name: d.Name, Type: d.Type, Score: d.Score, Baseline: d.Baseline,
					Reason: d.Reason, State: d.State, AlertID: d.AlertID, Since: d.Since}
				if d.HasBand {
					out[i].Band = &[2]float64{d.Band.Lo, d.Band.Hi}
				}
			}
			return out
		},
		Status: func(context.Context) api.StatusExtra {
			st := api.StatusExtra{DBSize: a.store.Size(), Uplink: api.UplinkStatus{State: "disabled"}, Ingest: ingestStatus(a.decoder)}
			if a.broker != nil {
				st.MQTTClients = a.broker.ClientsConnected()
			}
			if cfg.Upstream.URL != "" {
				depth, bytes, oldest := a.store.OutboxStats()
				st.Outbox = api.OutboxStatus{Depth: int64(depth), Bytes: bytes, Oldest: oldest}
				st.Uplink = uplinkStatus(a.uplink.Load().State())
			}
			return st
		},
		Token:        token,
		OpenMetrics:  cfg.HTTP.OpenMetrics,
		Pprof:        cfg.HTTP.Pprof,
		CORSOrigins:  cfg.HTTP.CORSOrigins,
		MaxBody:      int64(cfg.HTTP.MaxBody),
		WriteTimeout: cfg.HTTP.WriteTimeout,
		RawMaxRange:  cfg.HTTP.RawMaxRange,
		Hub:          a.hub,
	})
	if cfg.HTTP.Listen != "" {
		a.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		a.http = &http.Server{
			Handler:           a.api,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       cfg.HTTP.ReadTimeout,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		}
		a.bg.Go(func() {
			if err := a.http.Serve(a.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("http server stopped", "err", err)
			}
		})
	}

	if a.opts.Simulate > 0 {
		if a.broker == nil {
			return errors.New("--simulate needs mqtt.embedded: true")
		}
		sctx, cancel := context.WithCancel(context.Background())
		a.simStop = cancel
		a.bg.Go(func() {
			err := sim.Run(sctx, sim.Options{
				Broker:  "tcp://" + a.broker.Addr("tcp").String(),
				Sensors: a.opts.Simulate, Rate: a.opts.SimulateRate,
				ClientID: "edgeagent-simulator",
				Logger:   a.log.With("component", "simulator"),
			})
			if err != nil {
				a.log.Error("simulator stopped", "err", err)
			}
		})
	}
	sctx, stopStatus := context.WithCancel(context.Background())
	a.statusStop = stopStatus
	a.bg.Go(func() { a.reportStatus(sctx, 10*time.Second) })
	a.log.Info("edgeagent started", "version", version, "gateway", cfg.GatewayID,
		"mqtt", a.MQTTAddr(), "http", a.HTTPAddr(), "data", dbPath, "cpus", runtime.GOMAXPROCS(0))
	return nil
}

func (a *App) readyChecks() map[string]api.Check {
	checks := map[string]api.Check{
		"storage":  a.store.Ready,
		"pipeline": func() error { return a.pipeline.Stalled(10 * time.Second) },
	}
	if a.broker != nil {
		checks["broker"] = a.broker.Ready
	}
	if a.external != nil {
		checks["external_broker"] = a.external.Ready
	}
	return checks
}

// readyNotes are reported by /readyz without failing it.
func (a *App) readyNotes() map[string]api.Check {
	if a.uplink.Load() == nil {
		return nil
	}
	return map[string]api.Check{"upstream": func() error { return a.uplink.Load().Ready() }}
}

// uplinkStatus maps the uplink's state to the status API's words.
func uplinkStatus(s upstream.State) api.UplinkStatus {
	st := api.UplinkStatus{State: "connecting", Since: s.Since, LastError: s.LastError}
	switch {
	case s.Connected:
		st.State = "connected"
	case s.LastError != "":
		st.State = "down"
	}
	return st
}

// MQTTAddr is the embedded broker's TCP address, or "" without one.
func (a *App) MQTTAddr() string {
	if a.broker == nil {
		return ""
	}
	if addr := a.broker.Addr("tcp"); addr != nil {
		return addr.String()
	}
	return ""
}

// HTTPAddr is the bound HTTP address, or "" when HTTP is off.
func (a *App) HTTPAddr() string {
	if a.httpLn == nil {
		return ""
	}
	return a.httpLn.Addr().String()
}

// Close stops intake first (simulator, broker), drains the pipeline into
// storage, flushes and closes storage, then HTTP; all within ShutdownTimeout.
func (a *App) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.ShutdownTimeout)
	defer cancel()
	var errs []error
	if a.simStop != nil {
		a.simStop()
	}
	if a.statusStop != nil {
		a.statusStop()
	}
	if a.broker != nil {
		errs = append(errs, a.broker.Close())
	}
	if a.external != nil {
		errs = append(errs, a.external.Close())
	}
	if a.pipeline != nil {
		errs = append(errs, a.pipeline.Close(ctx))
	}
	if u := a.uplink.Load(); u != nil { // the outbox lives in storage: stop before it closes
		errs = append(errs, u.Close(ctx))
	}
	if a.store != nil {
		errs = append(errs, a.store.Close())
	}
	if a.api != nil {
		errs = append(errs, a.api.Close()) // WebSockets: Shutdown does not wait for hijacked conns
	}
	if a.http != nil {
		errs = append(errs, a.http.Shutdown(ctx))
	}
	a.bg.Wait()
	return errors.Join(errs...)
}

func brokerOptions(c config.MQTTConfig, h broker.Handler, log *slog.Logger, reg prometheus.Registerer) broker.Options {
	users := make([]broker.User, len(c.Users))
	for i, u := range c.Users {
		users[i] = broker.User{Username: u.Username, PasswordHash: u.PasswordHash, Publish: u.Publish, Subscribe: u.Subscribe}
	}
	return broker.Options{
		Listen: c.Listen, TLSListen: c.TLSListen, WSListen: c.WSListen,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey,
		AllowAnonymous: c.AllowAnonymous, Users: users,
		MaxClients: c.MaxClients, MaxPacket: int(c.MaxPacket), ConnectTimeout: c.ConnectTimeout,
		AckTimeout: c.AckTimeout,
		Handler:    h, Logger: log.With("component", "broker"), Registerer: reg,
	}
}

// readSecret reads a password file; key names the config key for errors.
func readSecret(path, key string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}
