package broker

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener serves one bound TCP socket to mochi, as plain MQTT, MQTT over TLS
// or MQTT over WebSocket. Unlike mochi's own listeners it
//   - sets a deadline for the TLS/WebSocket handshake and the CONNECT packet
//     (mochi replaces it with the keepalive deadline after CONNECT);
//   - keeps accepting after transient Accept errors (EMFILE);
//   - owns every per-connection goroutine: Close closes the socket, disconnects
//     the clients, closes connections still in their handshake, and waits, so
//     mochi's ClientsWg never sees an Add concurrent with its Wait (mochi
//     issue #424, its fix PR #508 not merged; #541 is another race of Close
//     against a connection being set up).
type listener struct {
	id      string
	ln      net.Listener
	tls     *tls.Config         // non-nil: TLS
	ws      *websocket.Upgrader // non-nil: WebSocket
	timeout time.Duration
	log     *slog.Logger

	// disconnect disconnects this listener's MQTT clients at Close, in
	// place of the CloseFn mochi passes (Broker.disconnectListener says why)
	disconnect func(id string)

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

var _ listeners.Listener = (*listener)(nil)

func (l *listener) ID() string              { return l.id }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Init(*slog.Logger) error { return nil }

func (l *listener) Protocol() string {
	switch {
	case l.ws != nil && l.tls != nil:
		return "wss"
	case l.ws != nil:
		return "ws"
	case l.tls != nil:
		return "tls"
	}
	return "tcp"
}

// Serve accepts until Close. It is run by mochi on its own goroutine.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt accept failed", "listener", l.id, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.serveConn(conn, establish)
	}
}

func (l *listener) serveConn(raw net.Conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer func() {
		raw.Close()
		l.mu.Lock()
		delete(l.conns, raw)
		l.mu.Unlock()
	}()
	deadline := time.Now().Add(l.timeout)
	_ = raw.SetDeadline(deadline)
	var conn net.Conn = raw
	if l.tls != nil {
		tc := tls.Server(raw, l.tls)
		if err := tc.Handshake(); err != nil {
			l.log.Debug("tls handshake failed", "listener", l.id, "remote", raw.RemoteAddr(), "err", err)
			return
		}
		conn = tc
	}
	if l.ws != nil {
		wc, err := upgrade(l.ws, conn)
		if err != nil {
			l.log.Debug("websocket upgrade failed", "listener", l.id, "remote", raw.RemoteAddr(), "err", err)
			return
		}
		_ = raw.SetDeadline(deadline) // the upgrader clears deadlines
		conn = wc
	}
	if err := establish(l.id, &lazyDeadline{Conn: conn}); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("mqtt connection ended", "listener", l.id, "remote", raw.RemoteAddr(), "err", err)
	}
}

// Close stops accepting, disconnects this listener's clients and waits for
// every connection goroutine.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	l.mu.Unlock()
	if already {
		return
	}
	_ = l.ln.Close()
	l.disconnect(l.id) // MQTT clients: DISCONNECT (v5) and close
	l.mu.Lock()
	for c := range l.conns { // still in handshake or CONNECT
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// upgrade performs the WebSocket handshake on conn (HTTP/1.1, any path,
// subprotocol "mqtt") and returns the binary-message stream as a net.Conn.
func upgrade(u *websocket.Upgrader, conn net.Conn) (net.Conn, error) {
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, fmt.Errorf("read upgrade request: %w", err)
	}
	rw := &hijackWriter{conn: conn, br: br, h: http.Header{}}
	c, err := u.Upgrade(rw, req, nil)
	if err != nil {
		return nil, err
	}
	return &wsConn{Conn: conn, c: c}, nil
}

// hijackWriter is the minimal http.ResponseWriter + http.Hijacker the
// upgrader needs; it writes error responses straight to the connection.
type hijackWriter struct {
	conn  net.Conn
	br    *bufio.Reader
	h     http.Header
	wrote bool
}

func (w *hijackWriter) Header() http.Header { return w.h }

func (w *hijackWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.h.Set("Connection", "close")
	bw := bufio.NewWriter(w.conn)
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	_ = w.h.Write(bw)
	bw.WriteString("\r\n")
	_ = bw.Flush()
}

func (w *hijackWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.conn.Write(b)
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, bufio.NewReadWriter(w.br, bufio.NewWriter(w.conn)), nil
}

// wsConn carries an MQTT byte stream in binary WebSocket messages (as mochi's
// own WebSocket listener does). Deadlines go to the underlying connection.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader
}

func (ws *wsConn) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if ws.r == nil {
			if n > 0 {
				return n, nil
			}
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, listeners.ErrInvalidMessage
			}
			ws.r = r
		}
		m, err := ws.r.Read(p[n:])
		n += m
		if err != nil {
			ws.r = nil
			if !errors.Is(err, io.EOF) {
				return n, err
			}
		}
	}
	return n, nil
}

func (ws *wsConn) Write(p []byte) (int, error) {
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// deadlineSlack is how much later than mochi asks a keepalive deadline may
// fire (see lazyDeadline).
const deadlineSlack = 10 * time.Millisecond

// lazyDeadline passes mochi's SetDeadline, which it calls before reading
// every packet with now + 1.5 × keepalive, on to the connection only when
// the deadline in force would fire before the one asked for or more than
// deadlineSlack after it, and then sets it deadlineSlack late. A silent
// client is so disconnected no earlier than mochi asks and at most
// deadlineSlack later, and a busy connection re-arms its runtime timers
// about once per deadlineSlack instead of once per packet.
type lazyDeadline struct {
	net.Conn
	set atomic.Int64 // unix nanos of the deadline in force; 0: unknown or none
}

func (c *lazyDeadline) SetDeadline(t time.Time) error {
	if t.IsZero() {
		c.set.Store(0)
		return c.Conn.SetDeadline(t)
	}
	want := t.UnixNano()
	if set := c.set.Load(); set != 0 && set >= want && set-want <= int64(deadlineSlack) {
		return nil
	}
	t = t.Add(deadlineSlack)
	if err := c.Conn.SetDeadline(t); err != nil {
		c.set.Store(0)
		return err
	}
	c.set.Store(t.UnixNano())
	return nil
}

func (c *lazyDeadline) SetReadDeadline(t time.Time) error {
	c.set.Store(0)
	return c.Conn.SetReadDeadline(t)
}

func (c *lazyDeadline) SetWriteDeadline(t time.Time) error {
	c.set.Store(0)
	return c.Conn.SetWriteDeadline(t)
}
