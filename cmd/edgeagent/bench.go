package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgeagent/edgeagent/agent/config"
	"github.com/edgeagent/edgeagent/agent/loadgen"
	"github.com/edgeagent/edgeagent/broker"
)

// benchReport is the outcome of one measured run (agent or bare broker).
type benchReport struct {
	Mode      string // "agent" or "bare"
	QoS       byte
	Clients   int
	Sensors   int
	Rate      float64 // requested total rate; 0 = as fast as accepted
	Gen       loadgen.Result
	Processed int64         // readings the agent (or bare hook) processed during the run
	ProcTime  time.Duration // first publish until the last reading was processed
	Rejected  int64
	Dropped   int64 // readings the broker or storage dropped: a loss
	Trimmed   int64 // old readings retention deleted for the byte budget or raw_retention: by design
	Lost      int64 // published - processed - rejected (never negative)
	// E2E are publish -> processed -> streamed latencies from the live
	// stream (/ws), sorted; StreamNote says why there are none.
	E2E        []time.Duration
	StreamNote string

	// The agent process (from /proc when local, else from its process_* metrics).
	CPU          time.Duration
	PeakRSS      int64 // bytes; 0 when unknown
	RSS          int64 // bytes after the run
	RSSAnon      int64 // of which anonymous (heap, stacks); the rest is mostly the bbolt mmap
	BytesWritten float64
	GenCPU       time.Duration // the load generator's own CPU time
	// Steal is the share of the machine's CPU time the hypervisor gave
	// to other guests during the run (-1: unknown): a noisy neighbour
	// slows the agent and the generator alike, so a run with much of it
	// says more about the host than about the agent.
	Steal float64
}

func (r benchReport) processedRate() float64 {
	if r.ProcTime <= 0 {
		return 0
	}
	return float64(r.Processed) / r.ProcTime.Seconds()
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "bench [--broker URL] [--clients N] [--sensors N] [--rate R] [--duration D] [--qos 0|1] [--metrics URL] [--pid PID] [--bare | --compare-bare] [--baseline hook|subscriber|both]", stderr)
	o := loadgen.Options{}
	fs.StringVar(&o.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL of the agent")
	fs.IntVar(&o.Clients, "clients", 8, "MQTT connections publishing in parallel")
	fs.IntVar(&o.Sensors, "sensors", 1000, "distinct sensor ids, split over the clients")
	fs.IntVar(&o.SensorBase, "sensor-base", 0, "first sensor number (use disjoint ranges for separate runs)")
	fs.Float64Var(&o.Rate, "rate", 0, "total readings per second over all clients; 0 = as fast as accepted")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "how long to publish")
	fs.Int64Var(&o.Count, "count", 0, "publish exactly this many readings instead of for --duration")
	fs.IntVar(&o.Inflight, "inflight", 64, "QoS 1 publishes awaiting PUBACK per client")
	fs.Float64Var(&o.AnomalyRate, "anomaly-rate", 0, "chance per reading that a simulated anomaly starts (alerts)")
	fs.StringVar(&o.Username, "username", "", "MQTT username")
	fs.StringVar(&o.Password, "password", "", "MQTT password")
	qos := fs.Uint("qos", 0, "QoS of the publishes (0 or 1)")
	metricsURL := fs.String("metrics", "http://127.0.0.1:8080/metrics", "the agent's /metrics URL (\"\": don't read counters)")
	pid := fs.Int("pid", 0, "the agent's pid for CPU and peak RSS (0: find the process listening on the metrics port; -1: none)")
	bare := fs.Bool("bare", false, "measure only a bare embedded broker (no pipeline) run as a child process")
	compare := fs.Bool("compare-bare", false, "run the same load against a bare embedded broker first and print agent/bare")
	baseline := fs.String("baseline", baselineHook, "what counts the bare broker's messages: \"hook\" (in OnPublish, before any delivery), \"subscriber\" (an MQTT client on #; mochi drops QoS 0 messages a slow client cannot take, and they count as lost) or \"both\"")
	bareServe := fs.Bool("bare-serve", false, "internal: be the bare broker (prints its addresses, serves /metrics, runs until stopped)")
	bareBin := fs.String("bare-bin", "", "internal: the edgeagent binary that serves the bare broker (default: this one)")
	settle := fs.Duration("settle", 15*time.Second, "longest wait for the agent to finish processing after publishing stops")
	wsURL := fs.String("ws", "", "the agent's live stream for end-to-end latency (default: /ws next to --metrics; \"off\": none)")
	wsSensors := fs.String("ws-sensors", "sim-*-0??", "glob of the sensors whose readings the stream carries (default: 1 in 10 of 1000)")
	token := fs.String("token", "", "API token for /ws (not needed on a loopback listener without http.token_file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *qos > 1 {
		return fmt.Errorf("bench: --qos %d: want 0 or 1", *qos)
	}
	o.QoS = byte(*qos)
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	baselines := []string{*baseline}
	switch *baseline {
	case baselineSubscriber, baselineHook:
	case "both":
		baselines = []string{baselineHook, baselineSubscriber}
	default:
		return fmt.Errorf("bench: --baseline %q: want subscriber, hook or both", *baseline)
	}
	if *bareServe {
		if len(baselines) != 1 {
			return fmt.Errorf("bench: --bare-serve serves one --baseline, not %q", *baseline)
		}
		// the agent's default runtime, so that the ratio compares pipelines
		setCPUs(config.Default().CPUs)
		return serveBare(ctx, o.Clients, *baseline, stdout)
	}
	var bareReps []benchReport
	if *bare || *compare {
		for _, bl := range baselines {
			r, err := benchBare(ctx, o, bl, *bareBin, *settle)
			if err != nil {
				return err
			}
			printReport(stdout, r)
			bareReps = append(bareReps, r)
		}
		if *bare {
			return nil
		}
	}
	stream := *wsURL
	if stream == "" && *metricsURL != "" {
		if u, err := url.Parse(*metricsURL); err == nil {
			u.Scheme = map[string]string{"https": "wss"}[u.Scheme]
			if u.Scheme == "" {
				u.Scheme = "ws"
			}
			u.Path = "/ws"
			u.RawQuery = url.Values{"sensor": {*wsSensors}, "rate": {"50"}}.Encode()
			stream = u.String()
		}
	}
	if stream == "off" {
		stream = ""
	}
	r, err := benchAgent(ctx, o, *metricsURL, *pid, *settle, stream, *token)
	if err != nil {
		return err
	}
	printReport(stdout, r)
	for _, b := range bareReps {
		if b.processedRate() > 0 {
			fmt.Fprintf(stdout, "RATIO agent/%s processed=%.3f (agent %.0f/s, %s %.0f/s)\n",
				b.Mode, r.processedRate()/b.processedRate(), r.processedRate(), b.Mode, b.processedRate())
		}
	}
	return nil
}

// The bare broker's baselines. The hook counts each publish in OnPublish,
// as the agent's pipeline receives it, and delivers nothing. The issue's
// wording is a plain subscriber counting messages; at max rate mochi cannot
// deliver QoS 0 to one client as fast as 8 publish and drops the rest
// (measured: 10k of 118k/s delivered, 90% dropped), so that throughput
// says how fast one client reads, not what the broker passes.
const (
	baselineSubscriber = "subscriber"
	baselineHook       = "hook"
)

// benchBare starts `edgeagent bench --bare-serve` (the embedded mochi broker
// whose messages a subscriber or a hook only counts, and /metrics) as a child
// process and runs the same load and meter against it as against the agent:
// same topology (generator and broker in separate processes), without the
// pipeline.
func benchBare(ctx context.Context, o loadgen.Options, baseline, bin string, settle time.Duration) (benchReport, error) {
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return benchReport{}, fmt.Errorf("bench: bare broker: %w", err)
		}
	}
	cmd := exec.Command(bin, "bench", "--bare-serve", "--clients", strconv.Itoa(o.Clients), "--baseline", baseline)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // never outlive the meter
	out, err := cmd.StdoutPipe()
	if err != nil {
		return benchReport{}, err
	}
	if err := cmd.Start(); err != nil {
		return benchReport{}, fmt.Errorf("bench: bare broker: %w", err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	var mqttAddr, httpAddr string
	if _, serr := fmt.Sscanf(line, "bare broker mqtt=%s http=%s", &mqttAddr, &httpAddr); err != nil || serr != nil {
		return benchReport{}, fmt.Errorf("bench: bare broker did not start: %q %v %v", line, err, serr)
	}
	o.Broker = "tcp://" + mqttAddr
	o.ClientID = "edgeagent-bench-bare"
	rep, err := benchAgent(ctx, o, "http://"+httpAddr+"/metrics", cmd.Process.Pid, settle, "", "")
	rep.Mode = "bare"
	if baseline == baselineSubscriber {
		rep.Mode = "bare-subscriber"
	}
	return rep, err
}

// serveBare is the bare broker process: mochi, what counts its messages
// (baseline), and /metrics with that count and the process collector.
func serveBare(ctx context.Context, clients int, baseline string, stdout io.Writer) error {
	reg := prometheus.NewRegistry()
	count := prometheus.NewCounter(prometheus.CounterOpts{Name: "edgeagent_readings_processed_total", Help: "Publishes counted by the bare broker's subscriber or hook."})
	reg.MustRegister(count, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler := func(context.Context, broker.Message) (broker.Pending, error) { return nil, nil }
	if baseline == baselineHook {
		handler = func(context.Context, broker.Message) (broker.Pending, error) { count.Inc(); return nil, nil }
	}
	b, err := broker.New(broker.Options{
		Listen: "127.0.0.1:0", AllowAnonymous: true, MaxClients: clients + 16, Handler: handler,
	})
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Close()
	if baseline == baselineSubscriber {
		sub, err := subscribeCounting("tcp://"+b.Addr("tcp").String(), count)
		if err != nil {
			return err
		}
		defer sub.Disconnect(250)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Fprintf(stdout, "bare broker mqtt=%s http=%s\n", b.Addr("tcp"), ln.Addr())
	<-ctx.Done()
	return nil
}

// subscribeCounting connects a paho client to broker and counts every
// message it receives on "#" at QoS 0. A message mochi drops for a slow
// subscriber is not counted, so it shows as lost.
func subscribeCounting(brokerURL string, count prometheus.Counter) (paho.Client, error) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).
		SetClientID("edgeagent-bench-bare-subscriber").SetCleanSession(true).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("bench: bare subscriber: connect %s: %v", brokerURL, tok.Error())
	}
	tok := c.Subscribe("#", 0, func(paho.Client, paho.Message) { count.Inc() })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("bench: bare subscriber: subscribe #: %v", tok.Error())
	}
	return c, nil
}

// benchAgent runs the load against a running agent and reads its counters
// and (when local) its process.
func benchAgent(ctx context.Context, o loadgen.Options, metricsURL string, pid int, settle time.Duration, wsURL, token string) (benchReport, error) {
	rep := benchReport{Mode: "agent", QoS: o.QoS, Clients: o.Clients, Sensors: o.Sensors, Rate: o.Rate, Steal: -1}
	if metricsURL == "" {
		res, err := loadgen.Run(ctx, o)
		rep.Gen = res
		return rep, err
	}
	if pid == 0 {
		if u, err := url.Parse(metricsURL); err == nil {
			if _, port, err := net.SplitHostPort(u.Host); err == nil {
				p, _ := strconv.Atoi(port)
				if found, err := loadgen.FindListener(p); err == nil {
					pid = found
				}
			}
		}
	}
	before, err := loadgen.Scrape(ctx, metricsURL)
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	var p0 loadgen.Proc
	if pid > 0 {
		if p0, err = loadgen.ReadProc(pid); err != nil {
			pid = -1
		}
	}
	done := func(s loadgen.Samples) int64 {
		return int64(s.Sum("edgeagent_readings_processed_total") + s.Sum("edgeagent_readings_rejected_total") -
			before.Sum("edgeagent_readings_processed_total") - before.Sum("edgeagent_readings_rejected_total"))
	}
	var stream *loadgen.Stream
	if wsURL != "" {
		if stream, err = loadgen.OpenStream(ctx, wsURL, token); err != nil {
			rep.StreamNote = err.Error()
		}
	}
	cpu0 := selfCPU()
	host0, herr := loadgen.ReadHost()
	start := time.Now()
	if stream != nil {
		stream.Reset(start.Truncate(time.Millisecond))
	}
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		if stream != nil {
			stream.Close()
		}
		return rep, err
	}
	rep.Gen = res
	rep.GenCPU = selfCPU() - cpu0
	end := waitSettled(ctx, settle, func() (int64, error) {
		s, err := loadgen.Scrape(ctx, metricsURL)
		if err != nil {
			return 0, err
		}
		return done(s), nil
	}, res.Published)
	if stream != nil {
		time.Sleep(100 * time.Millisecond) // the last coalesced frames
		var serr error
		rep.E2E, serr = stream.Close()
		if serr != nil {
			rep.StreamNote = "stream ended early: " + serr.Error()
		}
	}
	if host, err := loadgen.ReadHost(); err == nil && herr == nil {
		rep.Steal = host.StealShare(host0)
	}
	after, err := loadgen.Scrape(ctx, metricsURL)
	if err != nil {
		return rep, fmt.Errorf("bench: %w", err)
	}
	delta := func(name string) float64 { return after.Sum(name) - before.Sum(name) }
	rep.Processed = int64(delta("edgeagent_readings_processed_total"))
	rep.Rejected = int64(delta("edgeagent_readings_rejected_total"))
	rep.Dropped, rep.Trimmed = droppedAndTrimmed(before, after)
	rep.Lost = max(res.Published-rep.Processed-rep.Rejected, 0)
	rep.BytesWritten = delta("edgeagent_storage_bytes_written_total")
	// The processing ended no later than the last completed publish or the
	// poll that saw the counters settle, whichever is later.
	rep.ProcTime = max(end.Sub(start), res.Elapsed)
	rep.CPU = time.Duration(delta("process_cpu_seconds_total") * float64(time.Second))
	rep.RSS = int64(after.Sum("process_resident_memory_bytes"))
	if pid > 0 {
		if p1, err := loadgen.ReadProc(pid); err == nil {
			rep.CPU, rep.RSS, rep.PeakRSS, rep.RSSAnon = p1.CPU-p0.CPU, p1.RSS, p1.PeakRSS, p1.RSSAnon
		}
	}
	return rep, nil
}

// droppedAndTrimmed are the readings dropped (by the broker or storage: a
// loss) and the old readings retention deleted between two scrapes.
// Retention (byte budget, raw_retention) counts under
// edgeagent_storage_dropped_total too, but it is the configured history
// limit at work, not a reading lost.
func droppedAndTrimmed(before, after loadgen.Samples) (dropped, trimmed int64) {
	delta := func(name string) float64 { return after.Sum(name) - before.Sum(name) }
	trim := delta(`edgeagent_storage_dropped_total{reason="byte_budget"}`) + delta(`edgeagent_storage_dropped_total{reason="raw_retention"}`)
	all := delta("edgeagent_mqtt_messages_dropped_total") + delta("edgeagent_storage_dropped_total")
	return int64(all - trim), int64(trim)
}

// waitSettled polls count until it reaches want or stops rising for a second
// (or timeout passes) and returns when it last rose.
func waitSettled(ctx context.Context, timeout time.Duration, count func() (int64, error), want int64) time.Time {
	deadline := time.Now().Add(timeout)
	lastN, lastAt := int64(-1), time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, err := count()
		now := time.Now()
		if err == nil && n != lastN {
			lastN, lastAt = n, now
		}
		if lastN >= want || now.Sub(lastAt) > time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return lastAt
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func printReport(w io.Writer, r benchReport) {
	rate := "max"
	if r.Rate > 0 {
		rate = strconv.FormatFloat(r.Rate, 'f', 0, 64) + "/s"
	}
	fmt.Fprintf(w, "== %s: qos %d, %d clients, %d sensors, rate %s\n", r.Mode, r.QoS, r.Clients, r.Sensors, rate)
	fmt.Fprintf(w, "  offered     %9d readings in %6.2fs = %9.0f readings/s (published by the generator: written at QoS 0, PUBACKed at QoS 1)\n",
		r.Gen.Published, r.Gen.Elapsed.Seconds(), r.Gen.Rate())
	fmt.Fprintf(w, "  processed   %9d readings in %6.2fs = %9.0f readings/s\n", r.Processed, r.ProcTime.Seconds(), r.processedRate())
	fmt.Fprintf(w, "  rejected %d, dropped %d, lost %d, publish errors %d\n", r.Rejected, r.Dropped, r.Lost, r.Gen.Failed)
	if r.Trimmed > 0 {
		fmt.Fprintf(w, "  retention   %d of the oldest stored readings deleted for the byte budget or raw_retention (the history limit, not a loss)\n", r.Trimmed)
	}
	if len(r.Gen.Latency) > 0 {
		what := "publish -> PUBACK; the agent acknowledges QoS 1 only after the bbolt commit, so this is publish -> durable"
		if r.Mode != "agent" {
			what = "publish -> PUBACK (the bare broker acknowledges at once)"
		}
		fmt.Fprintf(w, "  latency     p50 %v  p99 %v  max %v  (%d samples; %s)\n",
			loadgen.Quantile(r.Gen.Latency, 0.5).Round(time.Microsecond), loadgen.Quantile(r.Gen.Latency, 0.99).Round(time.Microsecond),
			r.Gen.Latency[len(r.Gen.Latency)-1].Round(time.Microsecond), len(r.Gen.Latency), what)
	}
	if len(r.E2E) > 0 {
		fmt.Fprintf(w, "  e2e latency p50 %v  p99 %v  max %v  (%d readings of the sampled sensors via /ws: publish -> processed -> streamed, 1 ms resolution)\n",
			loadgen.Quantile(r.E2E, 0.5).Round(100*time.Microsecond), loadgen.Quantile(r.E2E, 0.99).Round(100*time.Microsecond),
			r.E2E[len(r.E2E)-1].Round(100*time.Microsecond), len(r.E2E))
	}
	if r.StreamNote != "" {
		fmt.Fprintf(w, "  e2e latency not measured: %s\n", r.StreamNote)
	}
	if r.Processed > 0 {
		fmt.Fprintf(w, "  %s CPU   %.2fs = %.0f%% of one core over %.1fs; %.2f µs CPU per reading\n",
			r.Mode, r.CPU.Seconds(), 100*r.CPU.Seconds()/r.ProcTime.Seconds(), r.ProcTime.Seconds(),
			float64(r.CPU.Microseconds())/float64(r.Processed))
		if r.PeakRSS > 0 {
			fmt.Fprintf(w, "  %s RSS   peak %.1f MB (VmHWM since start), now %.1f MB (%.1f MB anonymous, %.1f MB file pages: binary and bbolt mmap)\n",
				r.Mode, mb(r.PeakRSS), mb(r.RSS), mb(r.RSSAnon), mb(r.RSS-r.RSSAnon))
		} else {
			fmt.Fprintf(w, "  %s RSS   now %.1f MB (peak unknown: pass --pid on the agent's host)\n", r.Mode, mb(r.RSS))
		}
		if r.Mode == "agent" {
			fmt.Fprintf(w, "  storage     %.0f bytes written per reading\n", r.BytesWritten/float64(r.Processed))
		}
	}
	fmt.Fprintf(w, "  generator CPU %.2fs (this process)\n", r.GenCPU.Seconds())
	stealPct := -1.0 // unknown
	if r.Steal >= 0 {
		stealPct = 100 * r.Steal
		fmt.Fprintf(w, "  host steal  %.1f%% of the machine's CPU time went to other guests of the hypervisor during the run\n", stealPct)
	}
	fmt.Fprintf(w, "RESULT mode=%s qos=%d clients=%d sensors=%d rate=%s offered=%.0f processed=%.0f published=%d processed_n=%d rejected=%d dropped=%d trimmed=%d lost=%d p50_us=%d p99_us=%d cpu_us_per_reading=%.2f peak_rss_mb=%.1f bytes_per_reading=%.0f e2e_p50_us=%d e2e_p99_us=%d steal_pct=%.1f\n",
		r.Mode, r.QoS, r.Clients, r.Sensors, rate, r.Gen.Rate(), r.processedRate(), r.Gen.Published, r.Processed, r.Rejected, r.Dropped, r.Trimmed, r.Lost,
		loadgen.Quantile(r.Gen.Latency, 0.5).Microseconds(), loadgen.Quantile(r.Gen.Latency, 0.99).Microseconds(),
		perReading(r.CPU, r.Processed), mb(r.PeakRSS), r.BytesWritten/float64(max(r.Processed, 1)),
		loadgen.Quantile(r.E2E, 0.5).Microseconds(), loadgen.Quantile(r.E2E, 0.99).Microseconds(), stealPct)
}

func perReading(cpu time.Duration, n int64) float64 {
	if n == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(n)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
