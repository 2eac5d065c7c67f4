// Package upstream forwards the durable outbox (alerts, optional rollups and
// status events) to an upstream MQTT broker with paho, at least once and in
// outbox order.
//
// The outbox in storage is the only queue. paho is a transport: AutoReconnect
// and ConnectRetry are off, CleanSession is on and every connection cycle gets
// a fresh client, so a successful QoS 1 token means the broker sent PUBACK.
// Each cycle publishes a retained "online" birth (the last will is a retained
// "offline"), then drains the outbox from its oldest entry with at most Window
// publishes in flight and deletes entries only after their PUBACK. Any error —
// a lost link, a failed publish, or an acknowledgement that takes longer than
// AckTimeout on a link that looks up — ends the cycle; the next one starts
// again from the oldest undeleted entry after an exponential backoff with
// jitter. Receivers drop duplicates by the alert's UUIDv7 id.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// Entry is one outbox entry as the uplink consumes it.
type Entry struct {
	Seq     uint64    // position in the outbox; increases with every enqueue
	Lane    string    // LaneAlert, LaneRollup or LaneStatus
	Sensor  string    // last topic level; "" only for gateway-wide status entries
	Payload []byte    // published as is (an alert is JSON of agent.Alert)
	Created time.Time // when it was enqueued
}

// Outbox is the durable queue the uplink drains. storage.DB provides it (cmd
// adapts OutboxPeek's entry type). Implementations must be safe for
// concurrent use.
type Outbox interface {
	// OutboxPeek returns up to n entries with Seq > afterSeq in Seq order.
	OutboxPeek(afterSeq uint64, n int) ([]Entry, error)
	// OutboxDelete removes entries once they are durable gone; unknown seqs
	// are ignored. It returns after the commit.
	OutboxDelete(seqs ...uint64) error
	// OutboxStats reports the entries waiting, their payload bytes and the
	// creation time of the oldest (zero when empty).
	OutboxStats() (depth int, bytes int64, oldest time.Time)
	// OutboxNotify is signalled after a commit added entries.
	OutboxNotify() <-chan struct{}
}

// Options configures an Uplink. Only URL, Gateway and Outbox are required;
// every other zero value means the default named on the field.
type Options struct {
	URL      string // tcp://, ssl:// (also tls://, mqtts://), ws:// or wss://
	Gateway  string // the {gateway} topic level
	ClientID string // "" means "edgeagent-" + Gateway
	Username string
	Password string

	CAFile   string // PEM roots for ssl:// and wss://; "" uses the system roots
	CertFile string // client certificate (PEM) for mutual TLS, with KeyFile
	KeyFile  string

	TopicPrefix string // "" means "edgeagent"
	// Forward lists the lanes published: "alerts", "rollups", "status". Nil
	// means alerts and status. Entries of other lanes are deleted unsent and
	// counted as evicted. "status" also enables the birth and last will.
	Forward []string

	KeepAlive      time.Duration // zero means 30s
	ConnectTimeout time.Duration // zero means 10s
	WriteTimeout   time.Duration // bound on handing a publish to paho; zero means 10s
	// AckTimeout is how long the oldest unacknowledged publish may wait for
	// its PUBACK before the connection is judged stalled and recycled. Zero
	// means 10s.
	AckTimeout time.Duration
	Window     int // publishes in flight; zero means 128
	PeekBatch  int // entries read from the outbox at a time; zero means 2*Window

	MinBackoff time.Duration // zero means 500ms
	MaxBackoff time.Duration // zero means 60s
	// PollInterval re-reads the outbox even without a notification. Zero
	// means 5s.
	PollInterval time.Duration

	// MaxBytes and MaxAge bound the outbox from the uplink's side: while the
	// outbox holds more than MaxBytes, or entries older than MaxAge, the
	// oldest rollup entries are evicted first, then status entries. Alert
	// entries are never evicted. Zero disables that bound. Storage may enforce
	// its own bounds at enqueue time as well.
	MaxBytes int64
	MaxAge   time.Duration
	// StatsInterval is how often outbox gauges refresh and bounds are
	// enforced. Zero means 2s.
	StatsInterval time.Duration

	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers no metrics
}

func (o *Options) ensureDefaults() {
	if o.ClientID == "" {
		o.ClientID = "edgeagent-" + o.Gateway
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = "edgeagent"
	}
	if o.Forward == nil {
		o.Forward = []string{"alerts", "status"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.KeepAlive, 30*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	def(&o.AckTimeout, 10*time.Second)
	def(&o.MinBackoff, 500*time.Millisecond)
	def(&o.MaxBackoff, 60*time.Second)
	def(&o.PollInterval, 5*time.Second)
	def(&o.StatsInterval, 2*time.Second)
	if o.Window <= 0 {
		o.Window = 128
	}
	if o.PeekBatch <= 0 {
		o.PeekBatch = 2 * o.Window
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// State is where the uplink stands, for /readyz details and the status API.
type State struct {
	URL          string    `json:"url"`
	Connected    bool      `json:"connected"`
	Since        time.Time `json:"since"` // when Connected last changed (or the uplink started)
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	OutboxDepth  int       `json:"outbox_depth"`
	OutboxBytes  int64     `json:"outbox_bytes"`
	OutboxOldest time.Time `json:"outbox_oldest,omitzero"`
	Published    uint64    `json:"published"` // entries acknowledged since start
	Evicted      uint64    `json:"evicted"`   // entries evicted since start
}

// Uplink drains an Outbox to an upstream broker. Start runs it; Close stops it.
type Uplink struct {
	opts    Options
	outbox  Outbox
	log     *slog.Logger
	m       *metrics
	forward map[string]bool // lane -> published
	status  string          // {prefix}/{gateway}/status

	mu    sync.Mutex
	state State

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks opts and returns an Uplink; nothing runs until Start.
func New(ob Outbox, opts Options) (*Uplink, error) {
	return build(ob, opts, nil)
}

// Successor returns an Uplink with new options (a config reload) that drains
// the same outbox and counts into the same metrics, whatever
// opts.Registerer says. The caller closes u, then starts the successor: the
// outbox keeps every entry in between, so nothing is lost.
func (u *Uplink) Successor(opts Options) (*Uplink, error) {
	return build(u.outbox, opts, u.m)
}

// build checks opts; m nil means new metrics registered on opts.Registerer.
func build(ob Outbox, opts Options, m *metrics) (*Uplink, error) {
	opts.ensureDefaults()
	if ob == nil {
		return nil, errors.New("upstream: outbox is nil")
	}
	if opts.Gateway == "" {
		return nil, errors.New("upstream: gateway must not be empty")
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream: url: %w", err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("upstream: url %q: scheme must be tcp, ssl, ws or wss", opts.URL)
	}
	up := &Uplink{
		opts:    opts,
		outbox:  ob,
		log:     opts.Logger,
		m:       m,
		forward: map[string]bool{},
		status:  opts.TopicPrefix + "/" + opts.Gateway + "/status",
	}
	for _, f := range opts.Forward {
		switch f {
		case "alerts":
			up.forward[LaneAlert] = true
		case "rollups":
			up.forward[LaneRollup] = true
		case "status":
			up.forward[LaneStatus] = true
		default:
			return nil, fmt.Errorf("upstream: forward: %q is not one of alerts, rollups, status", f)
		}
	}
	// Load TLS material now so a bad file fails at start, not in the loop.
	if _, err := up.tlsConfig(u); err != nil {
		return nil, err
	}
	if up.m == nil {
		up.m = newMetrics(opts.Registerer)
	}
	up.state = State{URL: redact(u), Since: time.Now()}
	return up, nil
}

// Start launches the connect loop and the stats loop and returns at once.
// Call it at most once; Close stops what it started.
func (u *Uplink) Start(ctx context.Context) {
	ctx, u.cancel = context.WithCancel(ctx)
	u.refreshStats()
	u.wg.Go(func() { u.run(ctx) })
	u.wg.Go(func() { u.statsLoop(ctx) })
}

// Close stops the uplink: the current cycle stops publishing, deletes what
// was acknowledged, publishes a retained "offline" and disconnects. Entries
// not acknowledged stay in the outbox. It waits for every goroutine or until
// ctx ends, and returns ctx's error in that case.
func (u *Uplink) Close(ctx context.Context) error {
	if u.cancel == nil {
		return nil
	}
	u.cancel()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("upstream: close: %w", ctx.Err())
	}
}

// State returns a copy of the current state.
func (u *Uplink) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state
}

// Ready is a readiness check: nil while connected, else why not.
func (u *Uplink) Ready() error {
	s := u.State()
	if s.Connected {
		return nil
	}
	msg := fmt.Sprintf("upstream: disconnected since %s, outbox %d entries", s.Since.UTC().Format(time.RFC3339), s.OutboxDepth)
	if s.LastError != "" {
		msg += ": " + s.LastError
	}
	return errors.New(msg)
}

func (u *Uplink) setConnected(on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state.Connected != on {
		u.state.Connected, u.state.Since = on, time.Now()
	}
	if on {
		u.m.connected.Set(1)
	} else {
		u.m.connected.Set(0)
	}
}

func (u *Uplink) setError(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.state.LastError, u.state.LastErrorAt = err.Error(), time.Now()
}

// topic is where e goes upstream.
func (u *Uplink) topic(e Entry) string {
	base := u.opts.TopicPrefix + "/" + u.opts.Gateway
	switch e.Lane {
	case LaneAlert:
		return base + "/alerts/" + e.Sensor
	case LaneRollup:
		return base + "/rollups/" + e.Sensor
	default: // status events, never the retained online/offline topic itself
		if e.Sensor == "" {
			return base + "/status/gateway"
		}
		return base + "/status/" + e.Sensor
	}
}

// run is the connect loop: one fresh paho client per cycle, backoff between.
func (u *Uplink) run(ctx context.Context) {
	b := &backoff{min: u.opts.MinBackoff, max: u.opts.MaxBackoff}
	for ctx.Err() == nil {
		acked, err := u.cycle(ctx)
		if ctx.Err() != nil {
			return
		}
		if acked > 0 {
			b.reset() // the link worked; a fresh failure starts from Min
		}
		u.m.errors.Inc()
		u.setError(err)
		st := u.State()
		u.log.Warn("uplink down", "err", err, "outbox", st.OutboxDepth, "acked", acked)
		if b.wait(ctx) != nil {
			return
		}
	}
}

// cycle connects, publishes the birth, drains until an error or ctx ends,
// and disconnects. It returns how many entries were acknowledged.
func (u *Uplink) cycle(ctx context.Context) (int, error) {
	lost := make(chan error, 1)
	c, err := u.newClient(lost)
	if err != nil {
		return 0, err
	}
	tok := c.Connect()
	if err := wait(ctx, tok, u.opts.ConnectTimeout+time.Second); err != nil {
		c.Disconnect(0)
		return 0, fmt.Errorf("connect %s: %w", u.state.URL, err)
	}
	u.m.connects.Inc()
	if u.forward[LaneStatus] {
		if err := wait(ctx, c.Publish(u.status, 1, true, "online"), u.opts.AckTimeout); err != nil {
			c.Disconnect(0)
			return 0, fmt.Errorf("birth on %q: %w", u.status, err)
		}
	}
	u.setConnected(true)
	u.log.Info("uplink connected", "url", u.state.URL)
	acked, err := u.drain(ctx, c, lost)
	u.setConnected(false)
	if ctx.Err() != nil && u.forward[LaneStatus] && c.IsConnectionOpen() {
		// A clean disconnect does not fire the will: say offline ourselves.
		_ = wait(context.Background(), c.Publish(u.status, 1, true, "offline"), time.Second)
	}
	c.Disconnect(250)
	return acked, err
}

// flight is one publish waiting for its PUBACK.
type flight struct {
	seq  uint64
	tok  mqtt.Token // nil: not forwarded, delete without publishing
	lane string
	sent time.Time
}

// drain publishes the outbox from its oldest entry, keeping at most Window
// publishes in flight, until an error or ctx ends. Entries are deleted only
// after their PUBACK; the deletes of acknowledged entries are flushed before
// it returns.
func (u *Uplink) drain(ctx context.Context, c mqtt.Client, lost <-chan error) (int, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() { // lost is buffered and written at most once; this returns with cctx
		select {
		case err := <-lost:
			cancel(fmt.Errorf("connection lost: %w", err))
		case <-cctx.Done():
		}
	}()
	del := newDeleter(u, cancel)
	slots := make(chan struct{}, u.opts.Window)
	flights := make(chan flight, u.opts.Window)
	var wg sync.WaitGroup
	wg.Go(func() { del.run() })
	var acked int
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		acked = u.ack(cctx, cancel, flights, slots, del)
	}()

	err := u.produce(cctx, c, flights, slots)
	if err != nil {
		cancel(err)
	}
	<-ackDone
	del.close()
	wg.Wait()
	if derr := del.err(); derr != nil {
		cancel(derr)
	}
	return acked, context.Cause(cctx)
}

// produce reads the outbox in order and publishes; it returns nil when
// cctx ends and an error when reading or publishing fails.
func (u *Uplink) produce(cctx context.Context, c mqtt.Client, flights chan<- flight, slots chan struct{}) error {
	poll := time.NewTicker(u.opts.PollInterval)
	defer poll.Stop()
	notify := u.outbox.OutboxNotify()
	var after uint64
	for {
		es, err := u.outbox.OutboxPeek(after, u.opts.PeekBatch)
		if err != nil {
			return fmt.Errorf("outbox peek after %d: %w", after, err)
		}
		if len(es) == 0 {
			select {
			case <-notify:
			case <-poll.C:
			case <-cctx.Done():
				return nil
			}
			continue
		}
		for _, e := range es {
			select {
			case slots <- struct{}{}:
			case <-cctx.Done():
				return nil
			}
			f := flight{seq: e.Seq, lane: e.Lane, sent: time.Now()}
			if u.forward[e.Lane] {
				f.tok = c.Publish(u.topic(e), 1, false, e.Payload)
			}
			flights <- f // capacity Window and a slot is held: never blocks
			after = e.Seq
		}
	}
}

// ack waits for PUBACKs in publish order and hands acknowledged seqs to the
// deleter. The oldest publish waiting longer than AckTimeout ends the cycle.
func (u *Uplink) ack(cctx context.Context, cancel context.CancelCauseFunc, flights <-chan flight, slots <-chan struct{}, del *deleter) int {
	var n int
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var f flight
		select {
		case f = <-flights:
		case <-cctx.Done():
			return n
		}
		if f.tok == nil {
			u.m.evictedChild(f.lane).Inc()
			u.addEvicted(1)
			del.add(f.seq)
			<-slots
			continue
		}
		timer.Reset(u.opts.AckTimeout - time.Since(f.sent))
		select {
		case <-f.tok.Done():
			if err := f.tok.Error(); err != nil {
				cancel(fmt.Errorf("publish outbox seq %d: %w", f.seq, err))
				return n
			}
			u.m.ackLatency.Observe(time.Since(f.sent).Seconds())
			u.m.published.Inc()
			u.addPublished(1)
			n++
			del.add(f.seq)
			<-slots
		case <-timer.C:
			cancel(fmt.Errorf("publish outbox seq %d: no PUBACK within %v (stalled link)", f.seq, u.opts.AckTimeout))
			return n
		case <-cctx.Done():
			return n
		}
	}
}

func (u *Uplink) addPublished(n uint64) {
	u.mu.Lock()
	u.state.Published += n
	u.mu.Unlock()
}

func (u *Uplink) addEvicted(n uint64) {
	u.mu.Lock()
	u.state.Evicted += n
	u.mu.Unlock()
}

// deleter batches deletes of acknowledged entries so a slow group commit
// never holds up the in-flight window.
type deleter struct {
	u        *Uplink
	fail     context.CancelCauseFunc // ends the cycle on a failed delete
	mu       sync.Mutex
	pending  []uint64
	closed   bool
	firstErr error
	wake     chan struct{}
}

func newDeleter(u *Uplink, fail context.CancelCauseFunc) *deleter {
	return &deleter{u: u, fail: fail, wake: make(chan struct{}, 1)}
}

func (d *deleter) add(seq uint64) {
	d.mu.Lock()
	d.pending = append(d.pending, seq)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close makes run flush what is pending and return.
func (d *deleter) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *deleter) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.firstErr
}

func (d *deleter) run() {
	for range d.wake {
		d.mu.Lock()
		closed := d.closed
		d.mu.Unlock()
		d.flush()
		if closed {
			d.flush() // anything added between the two reads
			return
		}
	}
}

// flush deletes what is pending; a failure ends the cycle (the entries stay
// and are published again: duplicates, never losses).
func (d *deleter) flush() {
	d.mu.Lock()
	batch := d.pending
	d.pending = nil
	d.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := d.u.outbox.OutboxDelete(batch...); err != nil {
		err = fmt.Errorf("outbox delete %d entries: %w", len(batch), err)
		d.mu.Lock()
		if d.firstErr == nil {
			d.firstErr = err
		}
		d.mu.Unlock()
		d.fail(err)
	}
}

// wait waits for tok, at most d or until ctx ends.
func wait(ctx context.Context, tok mqtt.Token, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return fmt.Errorf("no answer within %v", d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redact drops the password from a URL for logs and State.
func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	return c.String()
}
