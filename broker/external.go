package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgeagent/edgeagent/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// ExternalOptions configures a subscriber to a broker that already runs on
// the gateway (e.g. Mosquitto).
type ExternalOptions struct {
	URL string // tcp://host:port (also ssl://, ws://); required
	// ClientID must be unique on that broker and stable across restarts: the
	// session (and QoS 1 messages not yet acknowledged) is kept under it.
	// Empty means "edgeagent-" + host name.
	ClientID           string
	Username, Password string
	Topics             []string // filters to subscribe; required
	QoS                byte     // subscription QoS, 0 or 1 (2 is treated like 1)
	// AckTimeout, if positive, is the deadline of the context a QoS 1 message
	// passes to Handler. Zero means 2s. It must stay well under the 10 s
	// ping timeout, because the handler runs on paho's router goroutine.
	AckTimeout time.Duration
	Handler    Handler
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers no metrics
}

// External feeds the Handler from an external broker. Design:
//   - Handlers run one at a time in arrival order (paho OrderMatters=true),
//     which keeps per-sensor order; each call is bounded by AckTimeout, far
//     below paho's ping timeout, so a slow store delays pings, never kills them.
//   - QoS 1 messages are acknowledged only after Handler returns nil
//     (AutoAckDisabled + Ack). On a Handler error the message is not
//     acknowledged, later messages of that connection are not acknowledged
//     either, and the connection is dropped; the session is persistent
//     (CleanSession=false), so the broker redelivers them after the reconnect.
//   - Our own loop connects with backoff and subscribes on every connect, so
//     subscriptions survive a broker restart that lost its sessions.
type External struct {
	opts ExternalOptions
	log  *slog.Logger

	connected  prometheus.Gauge
	connects   prometheus.Counter
	rejected   prometheus.Counter
	rejectLog  *rateLog
	subscribed atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	state  int // 0 new, 1 started, 2 closed
}

// NewExternal validates opts; nothing connects until Start.
func NewExternal(opts ExternalOptions) (*External, error) {
	if opts.URL == "" {
		return nil, errors.New("broker: external: empty url")
	}
	if len(opts.Topics) == 0 {
		return nil, errors.New("broker: external: no topics")
	}
	if opts.Handler == nil {
		return nil, errors.New("broker: external: nil handler")
	}
	opts.QoS = min(opts.QoS, 1)
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 2 * time.Second
	}
	if opts.ClientID == "" {
		host, _ := os.Hostname()
		opts.ClientID = "edgeagent-" + host
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := promauto.With(opts.Registerer)
	e := &External{
		opts: opts,
		log:  opts.Logger.With("component", "broker", "broker_url", opts.URL),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_mqtt_external_connected",
			Help: "1 while subscribed to the external broker.",
		}),
		connects: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_external_connects_total",
			Help: "Successful connections to the external broker.",
		}),
		rejected: f.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_mqtt_publish_rejected_total",
			Help: "Sensor messages not acknowledged because the agent could not make them durable.",
		}),
	}
	e.rejectLog = &rateLog{out: func(m string, a ...any) { e.log.Warn(m, a...) }, every: 10 * time.Second}
	return e, nil
}

// Start launches the connection loop and returns at once; Ready reports
// when the subscription is in place. Connection failures are retried with
// backoff until Close.
func (e *External) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch e.state {
	case 1:
		return errors.New("broker: external: already started")
	case 2:
		return fmt.Errorf("broker: external: start: %w", agent.ErrClosed)
	}
	e.state = 1
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.wg.Go(e.run)
	return nil
}

// Ready returns nil while connected and subscribed.
func (e *External) Ready() error {
	if !e.subscribed.Load() {
		return fmt.Errorf("broker: external %s: not subscribed", e.opts.URL)
	}
	return nil
}

// Close disconnects and waits for the connection loop.
func (e *External) Close() error {
	e.mu.Lock()
	st := e.state
	e.state = 2
	e.mu.Unlock()
	if st == 1 {
		e.cancel()
		e.wg.Wait()
	}
	return nil
}

func (e *External) run() {
	backoff := time.Duration(0)
	for e.ctx.Err() == nil {
		up, err := e.session()
		if e.ctx.Err() != nil {
			return
		}
		if up {
			backoff = 0 // it worked for a while: retry quickly
		}
		backoff = min(max(2*backoff, 250*time.Millisecond), 30*time.Second)
		e.log.Warn("external broker link down", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session connects one fresh paho client, subscribes, and returns when the
// link is lost, a message could not be made durable, or Close is called.
// up reports whether the subscription was established.
func (e *External) session() (up bool, err error) {
	lost := make(chan error, 1)
	signal := func(err error) {
		select {
		case lost <- err:
		default:
		}
	}
	var poisoned atomic.Bool // a message failed: acknowledge nothing more on this link
	handle := func(_ paho.Client, m paho.Message) {
		if poisoned.Load() {
			return
		}
		qos := min(m.Qos(), 1)
		ctx, cancel := e.ctx, context.CancelFunc(func() {})
		if qos > 0 {
			ctx, cancel = context.WithTimeout(e.ctx, e.opts.AckTimeout)
		}
		herr := handle(ctx, e.opts.Handler, Message{
			Topic:    m.Topic(),
			Payload:  m.Payload(),
			QoS:      qos,
			Retained: m.Retained(),
			ClientID: "",
		})
		cancel()
		if herr == nil {
			m.Ack()
			return
		}
		e.rejected.Inc()
		e.rejectLog.log("external message refused", "topic", m.Topic(), "qos", m.Qos(), "err", herr)
		if qos > 0 {
			poisoned.Store(true)
			signal(fmt.Errorf("topic %q not durable: %w", m.Topic(), herr))
		}
	}
	o := paho.NewClientOptions().
		AddBroker(e.opts.URL).
		SetClientID(e.opts.ClientID).
		SetUsername(e.opts.Username).
		SetPassword(e.opts.Password).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetPingTimeout(10 * time.Second).
		SetDefaultPublishHandler(handle).
		SetConnectionLostHandler(func(_ paho.Client, err error) { signal(err) })
	c := paho.NewClient(o)
	defer func() {
		e.subscribed.Store(false)
		e.connected.Set(0)
		c.Disconnect(250)
	}()
	if err := wait(e.ctx, c.Connect()); err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	e.connects.Inc()
	filters := make(map[string]byte, len(e.opts.Topics))
	for _, t := range e.opts.Topics {
		filters[t] = e.opts.QoS
	}
	if err := wait(e.ctx, c.SubscribeMultiple(filters, nil)); err != nil {
		return false, fmt.Errorf("subscribe %v: %w", e.opts.Topics, err)
	}
	e.subscribed.Store(true)
	e.connected.Set(1)
	e.log.Info("subscribed to external broker", "topics", e.opts.Topics, "qos", e.opts.QoS)
	select {
	case <-e.ctx.Done():
		return true, nil
	case err := <-lost:
		return true, err
	}
}

// wait waits for a paho token, bounded by ctx and 30 s.
func wait(ctx context.Context, t paho.Token) error {
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errors.New("timed out")
	}
}
