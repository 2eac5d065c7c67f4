// Package loadgen is edgeagent's load generator and meter: it publishes
// realistic JSON sensor readings over real MQTT connections (paho) as fast as
// the broker accepts or at a fixed total rate, counts exactly what it
// published, and measures publish→PUBACK latency of QoS 1 publishes. It also
// reads an agent's Prometheus counters (Scrape) and a local process's CPU and
// memory from /proc (ReadProc), so `edgeagent bench` can report throughput,
// latency, CPU per reading and peak RSS of an agent on the same host.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeagent/edgeagent/agent/sim"
)

// Options configures a load run. The zero value publishes 1000 sensors from
// 8 clients at QoS 0 as fast as possible for 10 s to tcp://127.0.0.1:1883.
type Options struct {
	Broker  string // MQTT URL; "" means tcp://127.0.0.1:1883
	Clients int    // MQTT connections; zero means 8
	Sensors int    // distinct sensor ids, split over the clients; zero means 1000
	// SensorBase offsets the sensor numbers, so runs can use disjoint ids.
	SensorBase int
	// Rate is the total readings per second over all clients; zero means as
	// fast as the broker accepts (TCP backpressure, and for QoS 1 the window).
	Rate float64
	// Duration bounds the run; zero means 10s unless Count is set.
	Duration time.Duration
	// Count, when positive, stops after exactly this many publishes in total
	// (split as evenly as possible over the clients).
	Count int64
	QoS   byte // 0 or 1
	// Inflight is the QoS 1 window: publishes awaiting a PUBACK per client.
	// Zero means 64.
	Inflight int
	Prefix   string // topic prefix; "" means "sensors": PREFIX/{sensor}/{kind}
	ClientID string // client id prefix; "" means "edgeagent-bench"
	Username string
	Password string
	// AnomalyRate is the chance per reading that a simulated anomaly starts
	// (spikes, stuck values, drift, silence); zero means none.
	AnomalyRate float64
	Seed        uint64
	// LatencyEvery records the latency of one QoS 1 publish in this many;
	// zero means every publish.
	LatencyEvery int
	Logger       *slog.Logger // nil discards
}

func (o *Options) ensureDefaults() {
	if o.Broker == "" {
		o.Broker = "tcp://127.0.0.1:1883"
	}
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Sensors <= 0 {
		o.Sensors = 1000
	}
	if o.Clients > o.Sensors {
		o.Clients = o.Sensors
	}
	if o.Duration <= 0 && o.Count <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Inflight <= 0 {
		o.Inflight = 64
	}
	if o.Prefix == "" {
		o.Prefix = "sensors"
	}
	if o.ClientID == "" {
		o.ClientID = "edgeagent-bench"
	}
	if o.LatencyEvery <= 0 {
		o.LatencyEvery = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Result is what one run published, counted by the generator itself.
type Result struct {
	// Published counts publishes completed by the client library: written to
	// the socket (QoS 0) or acknowledged with a PUBACK (QoS 1).
	Published int64
	// Failed counts publishes whose token ended in an error or was never
	// acknowledged before the run ended (QoS 1).
	Failed int64
	// Elapsed runs from the first publish to the last completion.
	Elapsed time.Duration
	// Latency holds sampled publish→PUBACK times (QoS 1 only), sorted.
	Latency []time.Duration
	// Sensors lists how many distinct sensor ids were published.
	Sensors int
}

// Rate is Published per second of Elapsed.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Published) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0..1) of the sorted latencies, 0 if none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// Run connects every client, publishes until Duration passes or Count is
// reached or ctx ends, waits for outstanding QoS 1 acknowledgements (at most
// 10 s), disconnects and returns the counts. It fails only if a client cannot
// connect.
func Run(ctx context.Context, opts Options) (Result, error) {
	opts.ensureDefaults()
	if opts.QoS > 1 {
		return Result{}, fmt.Errorf("loadgen: qos %d: want 0 or 1", opts.QoS)
	}
	clients := make([]*client, opts.Clients)
	for i := range clients {
		c, err := newClient(i, &opts)
		if err != nil {
			for _, c := range clients[:i] {
				c.mq.Disconnect(0)
			}
			return Result{}, err
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.mq.Disconnect(100)
		}
	}()
	runCtx := ctx
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}
	start := time.Now()
	var wg sync.WaitGroup
	var last atomic.Int64 // unix nanos of the last completion
	for i, c := range clients {
		quota := int64(-1)
		if opts.Count > 0 {
			quota = opts.Count / int64(opts.Clients)
			if int64(i) < opts.Count%int64(opts.Clients) {
				quota++
			}
		}
		wg.Go(func() { c.publish(runCtx, quota, &last) })
	}
	wg.Wait()
	var res Result
	for _, c := range clients {
		res.Published += c.published.Load()
		res.Failed += c.failed.Load()
		res.Latency = append(res.Latency, c.latency...)
		res.Sensors += len(c.sensors)
	}
	if l := last.Load(); l > 0 {
		res.Elapsed = time.Unix(0, l).Sub(start)
	}
	slices.Sort(res.Latency)
	return res, nil
}

type client struct {
	opts    *Options
	mq      paho.Client
	sensors []*sim.Sensor
	topics  []string

	published, failed atomic.Int64
	latency           []time.Duration // owned by the acker goroutine until publish returns
}

func newClient(i int, o *Options) (*client, error) {
	id := o.ClientID + "-" + strconv.Itoa(i)
	mq := paho.NewClient(paho.NewClientOptions().
		AddBroker(o.Broker).
		SetClientID(id).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetWriteTimeout(0).
		SetOrderMatters(false).
		SetKeepAlive(30 * time.Second))
	tok := mq.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		err := tok.Error()
		if err == nil {
			err = errors.New("timed out")
		}
		return nil, fmt.Errorf("loadgen: connect %s as %s: %w", o.Broker, id, err)
	}
	c := &client{opts: o, mq: mq}
	for s := i; s < o.Sensors; s += o.Clients {
		sn := sim.NewSensor(o.SensorBase+s, o.Seed)
		sn.AnomalyRate = o.AnomalyRate
		c.sensors = append(c.sensors, sn)
		c.topics = append(c.topics, o.Prefix+"/"+sn.ID+"/"+sn.Kind)
	}
	return c, nil
}

type pending struct {
	tok    paho.Token
	sent   time.Time
	sample bool
}

// publish sends readings round-robin over the client's sensors until ctx
// ends or quota (if >= 0) is used up.
func (c *client) publish(ctx context.Context, quota int64, last *atomic.Int64) {
	o := c.opts
	// Pacing: this client's share of Rate. The allowance is computed from
	// the time since the start, so ticks the scheduler skips are caught up.
	var share float64
	var interval time.Duration
	if o.Rate > 0 {
		share = o.Rate / float64(o.Clients)
		interval = max(time.Millisecond, time.Duration(float64(time.Second)/share))
	}
	window := make(chan pending, o.Inflight)
	ackerDone := make(chan struct{})
	go c.ack(window, last, ackerDone)

	buf := make([]byte, 0, 96)
	next := 0
	var n int64
	var tick *time.Ticker
	if interval > 0 {
		tick = time.NewTicker(interval)
		defer tick.Stop()
	}
	begin := time.Now()
loop:
	for quota < 0 || n < quota {
		for tick != nil && float64(n) >= share*time.Since(begin).Seconds() {
			select {
			case <-ctx.Done():
				break loop
			case <-tick.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		now := time.Now()
		s := c.sensors[next]
		topic := c.topics[next]
		next++
		if next == len(c.sensors) {
			next = 0
		}
		v, ok := s.Next(now)
		if !ok { // a silent sensor (simulated outage) publishes nothing
			continue
		}
		buf = sim.Payload(buf[:0], v, now)
		payload := append([]byte(nil), buf...) // paho keeps the slice until written
		tok := c.mq.Publish(topic, o.QoS, false, payload)
		n++
		select {
		case window <- pending{tok: tok, sent: now, sample: o.QoS > 0 && n%int64(o.LatencyEvery) == 0}:
		case <-ctx.Done():
			window <- pending{tok: tok, sent: now} // the acker still accounts for it
			break loop
		}
	}
	close(window)
	<-ackerDone
}

// ack waits for each token in publish order and counts it.
func (c *client) ack(window <-chan pending, last *atomic.Int64, done chan<- struct{}) {
	defer close(done)
	deadline := time.Time{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for p := range window {
		select {
		case <-p.tok.Done():
		default: // slow path: a timer only when the token is not done yet
			wait := 30 * time.Second
			if !deadline.IsZero() {
				wait = time.Until(deadline)
			}
			timer.Reset(max(wait, 0))
			select {
			case <-p.tok.Done():
			case <-timer.C:
			}
			timer.Stop()
		}
		now := time.Now()
		select {
		case <-p.tok.Done():
		default:
			c.failed.Add(1)
			if deadline.IsZero() {
				deadline = now.Add(10 * time.Second)
			}
			continue
		}
		if p.tok.Error() != nil {
			c.failed.Add(1)
			continue
		}
		c.published.Add(1)
		if p.sample {
			c.latency = append(c.latency, now.Sub(p.sent))
		}
		for {
			l := last.Load()
			if now.UnixNano() <= l || last.CompareAndSwap(l, now.UnixNano()) {
				break
			}
		}
	}
}
