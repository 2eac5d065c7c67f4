package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/agent/api"
)

func wsURL(srv *httptest.Server, q string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws" + q
}

func dial(t *testing.T, ctx context.Context, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", url, err, resp)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func result(sensor string, v float64, pad string) agent.Result {
	return agent.Result{Reading: agent.Reading{Sensor: sensor, Kind: "temperature", Unit: pad, Value: v, Time: time.UnixMilli(1_700_000_000_000)}, Raw: v}
}

// TestHub_slowClientKicked: one client never reads (4 KiB receive buffer);
// it is disconnected while three fast clients receive every message in order
// and Observe never blocks.
func TestHub_slowClientKicked(t *testing.T) {
	reg := prometheus.NewRegistry()
	hub := api.NewHub(api.HubOptions{Buffer: 64, WriteTimeout: 500 * time.Millisecond, Registerer: reg})
	srv := httptest.NewServer(api.New(api.Options{Hub: hub}))
	t.Cleanup(func() { srv.Close(); _ = hub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The slow client: a tiny receive buffer, and nobody reads.
	slowDialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	slow := dial(t, ctx, wsURL(srv, "?rate=50"), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: slowDialer.DialContext}},
	})

	const nFast = 3
	var got [nFast]atomic.Int64
	var readErr [nFast]error
	var wg sync.WaitGroup
	for i := range nFast {
		c := dial(t, ctx, wsURL(srv, "?rate=50"), nil)
		wg.Go(func() {
			r := &msgReader{c: c}
			for n := int64(0); ; n++ {
				m, err := r.next(ctx)
				if err != nil {
					readErr[i] = err
					return
				}
				if m.Reading == nil || m.Reading.Sensor != fmt.Sprintf("s-%d", n) {
					readErr[i] = fmt.Errorf("message %d = %+v", n, m)
					return
				}
				got[i].Add(1)
			}
		})
	}
	waitFor(t, "4 clients", func() bool { return hub.Clients() == nFast+1 })

	pad := strings.Repeat("x", 1024) // ~1.2 KB messages fill socket buffers sooner
	sent := 0
	const batch = 32 // below Buffer: fast clients never fall behind by more
	for testutil.ToFloat64(hubDropped(t, reg)) == 0 || sent < 2000 {
		if sent > 200_000 {
			t.Fatal("slow client never kicked")
		}
		rs := make([]agent.Result, batch)
		for i := range rs {
			rs[i] = result(fmt.Sprintf("s-%d", sent+i), float64(i), pad)
		}
		start := time.Now()
		hub.Observe(rs, nil)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Observe blocked for %v", d)
		}
		sent += batch
		for i := range nFast {
			waitFor(t, "fast client "+fmt.Sprint(i), func() bool { return got[i].Load() == int64(sent) || readErr[i] != nil })
			if readErr[i] != nil {
				t.Fatalf("fast client %d: %v", i, readErr[i])
			}
		}
	}
	waitFor(t, "slow client removed", func() bool { return hub.Clients() == nFast })
	if d := testutil.ToFloat64(hubDropped(t, reg)); d != 1 {
		t.Fatalf("edgeagent_ws_dropped_total = %v; want 1", d)
	}
	// The slow client's connection ends: after what it had buffered, a close
	// (policy violation) or a reset, never a hang.
	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
	defer rcancel()
	var err error
	for err == nil {
		_, _, err = slow.Read(rctx)
	}
	if rctx.Err() != nil {
		t.Fatalf("slow client still connected: %v", err)
	}
	if st := websocket.CloseStatus(err); st != -1 && st != websocket.StatusPolicyViolation {
		t.Errorf("slow client closed with %v; want policy violation or a dropped connection", st)
	}
	runtime.KeepAlive(slow) // an unreferenced conn would be closed by its finalizer
	t.Logf("sent %d messages; slow client kicked; fast clients got all", sent)
	for i := range nFast {
		if got[i].Load() != int64(sent) {
			t.Errorf("fast client %d got %d of %d", i, got[i].Load(), sent)
		}
	}
	_ = hub.Close()
	wg.Wait()
}

func hubDropped(t *testing.T, reg *prometheus.Registry) prometheus.Collector {
	return mustCounter(t, reg, "edgeagent_ws_dropped_total", "")
}

// msgReader splits the newline-separated messages of each WebSocket frame.
type msgReader struct {
	c       *websocket.Conn
	pending [][]byte
}

func (r *msgReader) next(ctx context.Context) (api.Message, error) {
	for len(r.pending) == 0 {
		_, b, err := r.c.Read(ctx)
		if err != nil {
			return api.Message{}, err
		}
		r.pending = bytes.Split(b, []byte("\n"))
	}
	var m api.Message
	err := json.Unmarshal(r.pending[0], &m)
	r.pending = r.pending[1:]
	return m, err
}

var readers sync.Map // *websocket.Conn -> *msgReader

func readMsg(t *testing.T, ctx context.Context, c *websocket.Conn) api.Message {
	t.Helper()
	r, _ := readers.LoadOrStore(c, &msgReader{c: c})
	m, err := r.(*msgReader).next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHub_filterAndDownsample(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	hub := api.NewHub(api.HubOptions{Now: func() time.Time { return time.Unix(0, now.Load()) }})
	// WriteTimeout applies to responses, never to the long-lived stream.
	srv := httptest.NewServer(api.New(api.Options{Hub: hub, WriteTimeout: 50 * time.Millisecond}))
	t.Cleanup(func() { srv.Close(); _ = hub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(srv, "?sensor=boiler-*&rate=1"), nil)
	all := dial(t, ctx, wsURL(srv, ""), nil) // default rate 2/s, no filter
	waitFor(t, "clients", func() bool { return hub.Clients() == 2 })

	time.Sleep(100 * time.Millisecond) // past the WriteTimeout: the stream must still work
	hub.Observe([]agent.Result{result("boiler-1", 1, ""), result("pump-1", 2, ""), result("boiler-2", 3, "")}, nil)
	now.Add(int64(100 * time.Millisecond))
	hub.Observe([]agent.Result{result("boiler-1", 4, "")}, nil) // too soon for both
	hot := result("boiler-1", 99, "")
	hot.Score = 0.9
	hub.Observe([]agent.Result{hot}, nil) // too soon, but anomalous: sent
	now.Add(int64(time.Second))
	sup := result("boiler-1", 5, "")
	sup.Suppressed = true
	hub.Observe([]agent.Result{sup, result("boiler-1", 6, "")}, []agent.Alert{
		{ID: "a1", Sensor: "pump-1", State: agent.AlertFiring}, {ID: "a2", Sensor: "boiler-1", State: agent.AlertFiring}})

	var seq []string
	for range 5 {
		m := readMsg(t, ctx, c)
		if m.Type == "reading" {
			seq = append(seq, fmt.Sprintf("%s=%g", m.Reading.Sensor, m.Reading.V))
		} else {
			seq = append(seq, "alert "+m.Alert.ID)
		}
	}
	if want := "boiler-1=1 boiler-2=3 boiler-1=99 boiler-1=6 alert a2"; strings.Join(seq, " ") != want {
		t.Fatalf("filtered client got %q; want %q", strings.Join(seq, " "), want)
	}
	seq = nil
	for range 7 {
		m := readMsg(t, ctx, all)
		if m.Type == "reading" {
			seq = append(seq, fmt.Sprintf("%s=%g", m.Reading.Sensor, m.Reading.V))
		} else {
			seq = append(seq, "alert "+m.Alert.ID)
		}
	}
	if want := "boiler-1=1 pump-1=2 boiler-2=3 boiler-1=99 boiler-1=6 alert a1 alert a2"; strings.Join(seq, " ") != want {
		t.Fatalf("unfiltered client got %q; want %q", strings.Join(seq, " "), want)
	}
}

func TestHub_authAndOrigin(t *testing.T) {
	hub := api.NewHub(api.HubOptions{OriginPatterns: []string{"grafana.lan:3000"}})
	srv := httptest.NewServer(api.New(api.Options{Hub: hub, Token: "tok-1"}))
	t.Cleanup(func() { srv.Close(); _ = hub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name   string
		protos []string
		header http.Header
		code   int
	}{
		{"no token", []string{api.Subprotocol}, nil, 401},
		{"wrong token", []string{api.Subprotocol, "token.nope"}, nil, 401},
		{"subprotocol token", []string{api.Subprotocol, "token.tok-1"}, nil, 101},
		{"bearer header", nil, http.Header{"Authorization": {"Bearer tok-1"}}, 101},
		{"foreign origin", []string{api.Subprotocol, "token.tok-1"}, http.Header{"Origin": {"http://evil.example"}}, 403},
		{"listed origin", []string{api.Subprotocol, "token.tok-1"}, http.Header{"Origin": {"http://grafana.lan:3000"}}, 101},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := websocket.Dial(ctx, wsURL(srv, ""), &websocket.DialOptions{Subprotocols: tt.protos, HTTPHeader: tt.header})
			if resp == nil || resp.StatusCode != tt.code {
				t.Fatalf("dial = %v, %v; want %d", resp, err, tt.code)
			}
			if c != nil {
				if tt.protos != nil && c.Subprotocol() != api.Subprotocol {
					t.Errorf("subprotocol %q; want %q (the token must not be echoed)", c.Subprotocol(), api.Subprotocol)
				}
				c.CloseNow()
			}
		})
	}
}

// TestHub_throughPipeline: a reading POSTed over HTTP goes through the real
// Intake and pipeline and reaches a WebSocket client with its alert.
func TestHub_throughPipeline(t *testing.T) {
	f := newFixture(t, "tok")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, ctx, wsURL(f.srv, "?sensor=hot-*"), &websocket.DialOptions{Subprotocols: []string{api.Subprotocol, "token.tok"}})
	waitFor(t, "client", func() bool { return f.api.Hub().Clients() == 1 })
	code, _, body := f.do(t, "POST", "/api/v1/readings", "tok", []byte(`[{"topic":"sensors/cold-1/temperature","payload":1},{"topic":"sensors/hot-1/temperature","payload":{"value":150}}]`))
	if code != 200 {
		t.Fatalf("POST = %d %s", code, body)
	}
	m := readMsg(t, ctx, c)
	if m.Type != "reading" || m.Reading.Sensor != "hot-1" || m.Reading.V != 150 || m.Reading.Band == nil || m.Reading.Band[1] != 100 {
		t.Fatalf("first message %+v", m)
	}
	m = readMsg(t, ctx, c)
	if m.Type != "alert" || m.Alert.Sensor != "hot-1" || m.Alert.State != agent.AlertFiring || m.Alert.Gateway != "gw-test" {
		t.Fatalf("second message %+v", m)
	}
	if err := f.api.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("read after hub close = %v; want the connection closed", err)
	}
}
