// Package broker embeds the mochi MQTT broker for edgeagent (TCP, TLS and
// WebSocket listeners, bcrypt auth with per-user topic filters, a CONNECT
// deadline, size and client limits) and hands every sensor PUBLISH to a
// Handler before it is acknowledged. External mode subscribes to an existing
// broker with paho and feeds the same Handler. MQTT types stop here: the rest
// of the agent sees only Message.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// Handler receives every sensor PUBLISH on the publisher's read goroutine,
// in the order the client sent them, before the PUBACK is written. A
// non-nil error means "not durable, do not acknowledge" (storage failure,
// timeout). For a QoS 1 message it may also return a Pending: the message
// is acknowledged once Pending.Wait returns nil, and until then the broker
// goes on reading (see acker). Bad payloads are NOT errors (they are
// acknowledged and counted by the handler). Message.QoS is 0 or 1 (2 is
// treated like 1). The Payload belongs to the handler (mochi allocates it
// per packet) but must not be mutated: the broker delivers the same bytes
// to subscribers. Topics starting with '$' never reach the Handler.
type Handler func(ctx context.Context, m Message) (Pending, error)

// Pending is a QoS 1 message a Handler took but has not made durable yet.
// The broker does not call Wait once the publisher has left: its message
// is still made durable, but there is no one to tell.
type Pending interface {
	// Wait returns nil once the message is durable, or why it is not.
	Wait(ctx context.Context) error
	// Done is closed once Wait would return at once.
	Done() <-chan struct{}
}

// ready reports whether p's Wait would return at once.
func ready(p Pending) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// handle runs h and waits for what it returns: the whole of a message.
func handle(ctx context.Context, h Handler, m Message) error {
	p, err := h(ctx, m)
	if err == nil && p != nil {
		err = p.Wait(ctx)
	}
	return err
}

// Message is one PUBLISH received from a client.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
	ClientID string
}

// User is one broker account. PasswordHash is a bcrypt hash (HashPassword);
// Publish and Subscribe are MQTT topic filters; everything else is denied.
type User struct {
	Username, PasswordHash string
	Publish, Subscribe     []string
}

// Options configures a Broker. Zero values are documented per field; the
// defaults live in withDefaults.
type Options struct {
	// Listen, TLSListen, WSListen are host:port addresses; empty disables that
	// listener (port 0 picks a free port, see Addr). At least one is needed.
	Listen, TLSListen, WSListen string
	// TLSCert and TLSKey are PEM files, required with TLSListen.
	TLSCert, TLSKey string

	// AllowAnonymous lets clients without a username connect and publish or
	// subscribe to anything. Users are checked with bcrypt; their filters
	// are the only topics they may use.
	AllowAnonymous bool
	Users          []User

	MaxClients int // zero means 1024
	MaxPacket  int // bytes; zero means 64 KiB
	// ConnectTimeout bounds the TLS/WebSocket handshake plus the CONNECT
	// packet (mochi has no such deadline). Zero means 5s.
	ConnectTimeout time.Duration
	// AckTimeout, if positive, is the deadline of the context a QoS 1 publish
	// passes to Handler. Zero means no deadline: the Handler bounds itself.
	AckTimeout time.Duration

	Handler    Handler               // nil: publishes are only brokered
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers no metrics
}

func (o *Options) withDefaults() {
	if o.MaxClients <= 0 {
		o.MaxClients = 1024
	}
	if o.MaxPacket <= 0 {
		o.MaxPacket = 64 << 10
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Broker is the embedded MQTT broker. Start it once, Close it once.
type Broker struct {
	opts      Options
	log       *slog.Logger
	srv       *mqtt.Server
	auth      *authHook
	metrics   *metrics
	rejectLog *rateLog
	tlsCfg    *tls.Config

	ctx    context.Context // Handler context; cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	started   bool
	closed    bool
	listeners map[string]*listener
	ready     atomic.Bool
	ackers    ackers
}

// New validates opts and builds a broker; nothing is bound until Start.
func New(opts Options) (*Broker, error) {
	opts.withDefaults()
	if opts.Listen == "" && opts.TLSListen == "" && opts.WSListen == "" {
		return nil, errors.New("broker: no listener: set Listen, TLSListen or WSListen")
	}
	b := &Broker{opts: opts, log: opts.Logger.With("component", "broker"), listeners: map[string]*listener{},
		ackers: ackers{m: map[*mqtt.Client]*acker{}, idle: ackIdle}}
	b.ackers.b = b
	if opts.TLSListen != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("broker: tls cert %q key %q: %w", opts.TLSCert, opts.TLSKey, err)
		}
		b.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for _, u := range opts.Users {
		if u.Username == "" {
			return nil, errors.New("broker: user with empty username")
		}
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacket)
	caps.MaximumClients = int64(opts.MaxClients)
	caps.MaximumClientWritesPending = 256
	caps.MaximumSessionExpiryInterval = 3600
	caps.MaximumInflight = 1024
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       slog.New(demoteHandler{b.log.Handler()}),
	})
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.metrics = newMetrics(opts.Registerer, func() float64 { return float64(b.ClientsConnected()) })
	warn := func(msg string, args ...any) { b.log.Warn(msg, args...) }
	b.rejectLog = &rateLog{out: warn, every: 10 * time.Second}
	b.auth = newAuthHook(opts.AllowAnonymous, opts.Users, b.metrics,
		&rateLog{out: func(msg string, args ...any) { b.log.Info(msg, args...) }, every: 10 * time.Second})
	if err := b.srv.AddHook(b.auth, nil); err != nil {
		return nil, fmt.Errorf("broker: auth hook: %w", err)
	}
	if err := b.srv.AddHook(&ingestHook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: ingest hook: %w", err)
	}
	return b, nil
}

// disconnectListener disconnects the clients of listener id, as mochi's
// closeListenerClients does, but without Clients.GetByListener: that takes
// the clients' read lock twice (it calls Len), so a leaving client's
// Delete queued for the write lock between the two blocks both for ever.
// A CI run hung so in Broker.Close (mochi v2.7.9; mochi issue #488, its
// fix, PR #489, is not merged).
func (b *Broker) disconnectListener(id string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// SetUsers atomically replaces the accounts (for a config reload). New
// CONNECTs and every later ACL check use them; connected clients stay
// connected but lose rights that were removed.
func (b *Broker) SetUsers(allowAnon bool, users []User) {
	b.auth.cfg.Store(newAuthConfig(allowAnon, users))
}

// Start binds every configured listener and starts serving; it returns once
// all are bound, or with the first bind error (nothing left bound).
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("broker: start: %w", agent.ErrClosed)
	}
	if b.started {
		return errors.New("broker: already started")
	}
	var lc net.ListenConfig
	var bound []*listener
	add := func(id, addr string, tlsCfg *tls.Config, ws bool) error {
		if addr == "" {
			return nil
		}
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("broker: listen %s %q: %w", id, addr, err)
		}
		l := &listener{id: id, ln: ln, tls: tlsCfg, timeout: b.opts.ConnectTimeout, log: b.log, conns: map[net.Conn]struct{}{},
			disconnect: b.disconnectListener}
		if ws {
			l.ws = &websocket.Upgrader{
				Subprotocols: []string{"mqtt"},
				// MQTT credentials, not the browser origin, decide access.
				CheckOrigin: func(*http.Request) bool { return true },
			}
		}
		bound = append(bound, l)
		return nil
	}
	err := errors.Join(
		add("tcp", b.opts.Listen, nil, false),
		add("tls", b.opts.TLSListen, b.tlsCfg, false),
		add("ws", b.opts.WSListen, nil, true),
	)
	if err != nil {
		for _, l := range bound {
			l.ln.Close()
		}
		return err
	}
	for _, l := range bound {
		if err := b.srv.AddListener(l); err != nil {
			for _, l := range bound {
				l.ln.Close()
			}
			return fmt.Errorf("broker: add listener %s: %w", l.id, err)
		}
		b.listeners[l.id] = l
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	b.started = true
	b.ready.Store(true)
	for _, l := range bound {
		b.log.Info("mqtt listening", "listener", l.id, "addr", l.ln.Addr().String())
	}
	return nil
}

// Addr returns the bound address of listener "tcp", "tls" or "ws", or nil
// when that listener is not configured or not started.
func (b *Broker) Addr(listener string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.listeners[listener]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Publish delivers a message from the agent itself to subscribers (inline
// client: no ACL, and it skips the Handler). qos limits the delivery QoS.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if !b.ready.Load() {
		return fmt.Errorf("broker: publish %q: %w", topic, agent.ErrClosed)
	}
	if err := b.srv.Publish(topic, payload, retain, qos); err != nil {
		return fmt.Errorf("broker: publish %q: %w", topic, err)
	}
	return nil
}

// ClientsConnected is the number of connected MQTT clients.
func (b *Broker) ClientsConnected() int {
	return int(atomic.LoadInt64(&b.srv.Info.ClientsConnected))
}

// Ready returns nil while the broker is listening.
func (b *Broker) Ready() error {
	if !b.ready.Load() {
		return fmt.Errorf("broker: not listening: %w", agent.ErrClosed)
	}
	return nil
}

// Close cancels Handler contexts (so a blocked publish is refused, not
// acknowledged), stops the listeners, disconnects every client and waits.
// It is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.ready.Store(false)
	b.cancel()
	err := b.srv.Close()
	b.ackers.close() // after the clients: none can start one any more
	if err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	return nil
}
