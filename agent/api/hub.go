package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
)

// Subprotocol is the WebSocket subprotocol of /ws. A browser, which cannot
// set an Authorization header on a WebSocket, offers it together with
// "token.<token>"; the server answers with Subprotocol only.
const Subprotocol = "edgeagent.v1"

// HubOptions configures a Hub. The zero value is ready to use.
type HubOptions struct {
	// Buffer is each client's queue of encoded messages; a client whose
	// queue is full is disconnected ("too slow"). Zero means 256.
	Buffer int
	// WriteTimeout bounds one WebSocket write. Zero means 5s.
	WriteTimeout time.Duration
	// DefaultRate is the readings per second per sensor a client gets when it
	// does not ask (?rate=); zero means 2. MaxRate caps ?rate=; zero means 50.
	DefaultRate float64
	MaxRate     float64
	// OriginPatterns are the hosts, besides the page's own, allowed to open
	// the stream (coder/websocket AcceptOptions.OriginPatterns).
	OriginPatterns []string
	// Now is the clock of downsampling; nil means time.Now.
	Now        func() time.Time
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
}

func (o *HubOptions) ensureDefaults() {
	if o.Buffer <= 0 {
		o.Buffer = 256
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.DefaultRate <= 0 {
		o.DefaultRate = 2
	}
	if o.MaxRate <= 0 {
		o.MaxRate = 50
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Hub fans the pipeline's results and alerts out to WebSocket clients. It is
// an agent.Observer: Observe encodes each message once (only when some
// client wants it) and offers the bytes to every client's queue without
// blocking; a client whose queue is full is disconnected. The pipeline is
// never slowed by a viewer.
type Hub struct {
	opts   HubOptions
	ctx    context.Context // cancelled by Close: ends every client
	cancel context.CancelFunc
	wg     sync.WaitGroup // client handlers and kick goroutines

	mu      sync.RWMutex
	clients map[*client]struct{}
	closed  bool
	n       atomic.Int32

	gauge   prometheus.Gauge
	dropped prometheus.Counter
	sent    prometheus.Counter
}

var _ agent.Observer = (*Hub)(nil)

// NewHub returns a running Hub; Close it to disconnect every client.
func NewHub(opts HubOptions) *Hub {
	opts.ensureDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		opts: opts, ctx: ctx, cancel: cancel, clients: map[*client]struct{}{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgeagent_ws_clients", Help: "WebSocket clients connected to /ws.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_ws_dropped_total", Help: "WebSocket clients disconnected because their queue was full (too slow).",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgeagent_ws_messages_total", Help: "Messages queued to WebSocket clients.",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.gauge, h.dropped, h.sent)
	}
	return h
}

// client is one /ws connection.
type client struct {
	conn   atomic.Pointer[websocket.Conn] // set once the handshake is done
	msgs   chan []byte
	glob   string // path.Match pattern on sensor ids; "" matches all
	gap    int64  // minimum nanoseconds between two readings of one sensor
	kicked atomic.Bool

	mu      sync.Mutex // guards sensors: shards call Observe in parallel
	sensors map[string]sensorState
}

func (c *client) matches(sensor string) bool {
	if c.glob == "" {
		return true
	}
	ok, _ := path.Match(c.glob, sensor) // validated when the client connected
	return ok
}

// wantsLocked reports whether c takes a reading of sensor observed at now:
// the sensor matches c's glob and c's rate allows it, or the score is too
// high to downsample away. A reading taken is recorded; c.mu is held. One
// map lookup: the glob is matched once per sensor (path.Match per reading
// was most of Observe).
func (c *client) wantsLocked(sensor string, now int64, score float64) bool {
	st, seen := c.sensors[sensor]
	if !seen {
		st = sensorState{match: c.matches(sensor)}
	}
	due := st.match && (!st.sent || now-st.last >= c.gap)
	if due {
		st.sent, st.last = true, now
	}
	if due || !seen {
		c.sensors[sensor] = st
	}
	return due || (st.match && score >= alwaysScore)
}

// sensorState is what a client remembers of a sensor.
type sensorState struct {
	match bool  // the sensor id matches the client's glob
	sent  bool  // a reading was queued at last
	last  int64 // hub clock
}

// Clients is the number of connected clients.
func (h *Hub) Clients() int { return int(h.n.Load()) }

// Message is what /ws sends: each WebSocket text message holds one or more
// of these JSON objects, separated by "\n" (a burst is sent in one frame).
// Type "reading" carries the Reading fields, type "alert" the Alert.
type Message struct {
	Type    string       `json:"type"` // "reading" or "alert"
	Reading *WSReading   `json:"reading,omitempty"`
	Alert   *agent.Alert `json:"alert,omitempty"`
}

// WSReading is a processed reading on the live stream; T is Unix ms. The
// hub writes it by hand (encodeReading); a test keeps the two the same.
type WSReading struct {
	Sensor   string      `json:"sensor"`
	Kind     string      `json:"kind,omitempty"`
	Unit     string      `json:"unit,omitempty"`
	T        int64       `json:"t"`
	V        float64     `json:"v"`
	Raw      float64     `json:"raw"`
	Score    float64     `json:"score"`
	Detector string      `json:"detector,omitempty"`
	Band     *[2]float64 `json:"band,omitempty"`
	Flags    agent.Flags `json:"flags,omitempty"`
}

// alwaysScore: a reading scored at least this high is never downsampled
// away, so a viewer sees the anomalous value itself.
const alwaysScore = 0.5

// Observe queues rs (except suppressed ones) and as to every interested
// client. It never blocks on a client.
func (h *Hub) Observe(rs []agent.Result, as []agent.Alert) {
	if h.n.Load() == 0 {
		return
	}
	now := h.opts.Now().UnixNano()
	h.mu.RLock()
	defer h.mu.RUnlock()
	// Clients outside, readings inside: each client's lock is taken once
	// per batch, and each reading is encoded at most once for all clients.
	var enc [][]byte // rs[i] as sent, once some client wants it
	for c := range h.clients {
		if c.kicked.Load() {
			continue
		}
		c.mu.Lock()
		for i := range rs {
			r := &rs[i]
			if r.Suppressed || !c.wantsLocked(r.Sensor, now, r.Score) {
				continue
			}
			if enc == nil {
				enc = make([][]byte, len(rs))
			}
			if enc[i] == nil {
				if enc[i] = encodeReading(r); enc[i] == nil {
					enc[i] = []byte{} // not encodable: never sent
				}
			}
			if len(enc[i]) > 0 {
				h.sendLocked(c, enc[i])
			}
		}
		c.mu.Unlock()
	}
	for i := range as {
		a := &as[i]
		var b []byte
		for c := range h.clients {
			if c.kicked.Load() || !c.matches(a.Sensor) {
				continue
			}
			if b == nil {
				var err error
				if b, err = json.Marshal(Message{Type: "alert", Alert: a}); err != nil {
					h.opts.Logger.Warn("alert not encodable", "sensor", a.Sensor, "err", err)
					break
				}
			}
			h.sendLocked(c, b)
		}
	}
}

// sendLocked offers b to c without blocking; h.mu is held for reading.
func (h *Hub) sendLocked(c *client, b []byte) {
	select {
	case c.msgs <- b:
		h.sent.Inc()
	default:
		if c.kicked.CompareAndSwap(false, true) {
			h.dropped.Inc()
			h.wg.Go(func() { h.kick(c) })
		}
	}
}

// kick disconnects a client that cannot keep up.
func (h *Hub) kick(c *client) {
	h.remove(c)
	h.opts.Logger.Info("websocket client too slow, disconnected", "queue", cap(c.msgs))
	if conn := c.conn.Load(); conn != nil { // else ServeHTTP closes it after the handshake
		_ = conn.Close(websocket.StatusPolicyViolation, "too slow")
	}
}

func (h *Hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		h.n.Add(-1)
		h.gauge.Dec()
	}
}

// ServeHTTP upgrades to a WebSocket and streams until the client leaves, is
// too slow, or the hub closes. Query: sensor=GLOB (path.Match syntax, e.g.
// "sim-temp*"), rate=N readings per second per sensor (0 < N <= MaxRate).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := onlyParams(q, "sensor", "rate"); err != nil {
		writeError(w, err)
		return
	}
	glob := q.Get("sensor")
	if _, err := path.Match(glob, ""); err != nil {
		writeError(w, badParam("sensor", "%q is not a valid glob: %v", glob, err))
		return
	}
	rate := h.opts.DefaultRate
	if v := q.Get("rate"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || f > h.opts.MaxRate {
			writeError(w, badParam("rate", "%q must be a number above 0 and at most %g", v, h.opts.MaxRate))
			return
		}
		rate = f
	}
	// The client joins before the handshake, so everything observed after
	// the handshake completes (an alert right after connecting) is queued for
	// it; the queue drains once the connection is up.
	c := &client{msgs: make(chan []byte, h.opts.Buffer), glob: glob,
		gap: int64(float64(time.Second) / rate), sensors: map[string]sensorState{}}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		writeError(w, &Error{Status: http.StatusServiceUnavailable, Msg: "shutting down"})
		return
	}
	h.wg.Add(1) // under mu, so Close cannot be past its Wait
	h.clients[c] = struct{}{}
	h.n.Add(1)
	h.gauge.Inc()
	h.mu.Unlock()
	defer h.wg.Done()
	defer h.remove(c)

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:   []string{Subprotocol},
		OriginPatterns: h.opts.OriginPatterns,
	})
	if err != nil {
		h.opts.Logger.Debug("websocket not accepted", "remote", r.RemoteAddr, "err", err)
		return // Accept wrote the response
	}
	conn.SetReadLimit(1024) // clients send nothing but control frames
	c.conn.Store(conn)
	if c.kicked.Load() || h.ctx.Err() != nil {
		conn.CloseNow()
		return
	}

	ctx := conn.CloseRead(h.ctx) // ends on the client's close, a read error or hub Close
	err = h.writeLoop(ctx, c, conn)
	switch {
	case c.kicked.Load():
	case h.ctx.Err() != nil:
		conn.CloseNow() // shutting down: do not wait for handshakes
	case err != nil:
		h.opts.Logger.Debug("websocket client gone", "remote", r.RemoteAddr, "err", err)
		conn.CloseNow()
	}
}

// maxFrame bounds the bytes of queued messages coalesced into one WebSocket message.
const maxFrame = 16 << 10 // below common client read limits (coder/websocket: 32 KiB)

// writeLoop sends c's queue. Messages already waiting are coalesced into one
// WebSocket text message, newline-separated (one write per burst instead of
// one per reading: measured ~5x cheaper with many clients).
func (h *Hub) writeLoop(ctx context.Context, c *client, conn *websocket.Conn) error {
	var buf []byte
	for {
		select {
		case b := <-c.msgs:
			buf = append(buf[:0], b...)
		more:
			for len(buf) < maxFrame {
				select {
				case b := <-c.msgs:
					buf = append(append(buf, '\n'), b...)
				default:
					break more
				}
			}
			wctx, cancel := context.WithTimeout(ctx, h.opts.WriteTimeout)
			err := conn.Write(wctx, websocket.MessageText, buf)
			cancel()
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close disconnects every client and waits for their goroutines. Observe
// after Close does nothing.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	if n := h.Clients(); n != 0 {
		return errors.New("websocket hub: clients left after close")
	}
	return nil
}
