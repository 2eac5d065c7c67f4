package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// subscriber records every message under a topic filter, with QoS 1 and a
// persistent session so nothing is missed across a broker restart.
type subscriber struct {
	t        testing.TB
	c        mqtt.Client
	mu       sync.Mutex
	total    int
	seen     map[string]bool     // alert id -> received
	order    map[string][]string // sensor -> ids in first-arrival order
	topics   map[string]int      // topic -> messages
	status   []string            // payloads on the status topic, in order
	retained []bool
}

func subscribe(t testing.TB, brokerURL, filter string) *subscriber {
	t.Helper()
	s := &subscriber{t: t, seen: map[string]bool{}, order: map[string][]string{}, topics: map[string]int{}}
	connected := make(chan struct{}, 16)
	o := mqtt.NewClientOptions().AddBroker(brokerURL).
		SetClientID(fmt.Sprintf("test-sub-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(50 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOrderMatters(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe(filter, 1, nil) // resubscribe; the session usually still has it
			connected <- struct{}{}
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) { s.record(msg) })
	s.c = mqtt.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("subscriber: no OnConnect")
	}
	tok := s.c.Subscribe(filter, 1, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %q: %v", filter, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *subscriber) record(msg mqtt.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topics[msg.Topic()]++
	if strings.HasSuffix(msg.Topic(), "/status") {
		s.status = append(s.status, string(msg.Payload()))
		s.retained = append(s.retained, msg.Retained())
		return
	}
	s.total++
	var a struct {
		ID     string `json:"id"`
		Sensor string `json:"sensor"`
	}
	if err := json.Unmarshal(msg.Payload(), &a); err != nil || a.ID == "" {
		s.t.Errorf("topic %q: payload %q: not an alert: %v", msg.Topic(), msg.Payload(), err)
		return
	}
	if !strings.HasSuffix(msg.Topic(), "/"+a.Sensor) {
		s.t.Errorf("topic %q carries sensor %q", msg.Topic(), a.Sensor)
	}
	if !s.seen[a.ID] {
		s.seen[a.ID] = true
		s.order[a.Sensor] = append(s.order[a.Sensor], a.ID)
	}
}

func (s *subscriber) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *subscriber) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// waitDistinct waits until n distinct alert ids arrived.
func (s *subscriber) waitDistinct(n int, d time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for s.distinct() < n {
		if time.Now().After(deadline) {
			s.mu.Lock()
			var ids []string
			for id := range s.seen {
				ids = append(ids, id)
			}
			s.mu.Unlock()
			slices.Sort(ids)
			var gaps []string
			for i := 1; i < len(ids); i++ {
				if ids[i][strings.LastIndexByte(ids[i], '-')+1:] != fmt.Sprintf("%06d", i+len(gaps)) {
					gaps = append(gaps, ids[i-1]+".."+ids[i])
				}
			}
			s.t.Fatalf("subscriber got %d of %d alert ids within %v; gaps %v", s.distinct(), n, d, gaps[:min(len(gaps), 10)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOrder asserts that, after dropping repeated ids, each sensor's ids
// arrived exactly in the order of want.
func (s *subscriber) checkOrder(want map[string][]string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for sensor, ids := range want {
		got := s.order[sensor]
		if len(got) != len(ids) {
			s.t.Errorf("sensor %q: got %d distinct ids, want %d", sensor, len(got), len(ids))
			continue
		}
		for i := range ids {
			if got[i] != ids[i] {
				s.t.Errorf("sensor %q: id #%d = %s, want %s (out of order)", sensor, i, got[i], ids[i])
				break
			}
		}
	}
}

// waitFor polls cond every 10ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startUplink starts an Uplink on ob with fast test timings; it is closed at cleanup.
func startUplink(t testing.TB, ob Outbox, opts Options) (*Uplink, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Gateway == "" {
		opts.Gateway = "gw1"
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 500 * time.Millisecond
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 200 * time.Millisecond
	}
	if opts.StatsInterval == 0 {
		opts.StatsInterval = 100 * time.Millisecond
	}
	opts.Registerer = reg
	u, err := New(ob, opts)
	if err != nil {
		t.Fatal(err)
	}
	u.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := u.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return u, reg
}

func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return sum
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// stallProxy forwards TCP to target until stalled; while stalled it stops
// reading from both sides (bytes pile up in kernel buffers, nothing is
// acknowledged), which to the client looks like a link that is up but dead.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
	accepts atomic.Int64
}

func newStallProxy(t testing.TB, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *stallProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepts.Add(1)
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(b, c) })
		p.wg.Go(func() { p.pipe(c, b) })
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		for p.stalled.Load() {
			time.Sleep(5 * time.Millisecond)
			if p.closed(src) {
				return
			}
		}
		src.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
	}
}

// closed reports whether c was closed by closeAll.
func (p *stallProxy) closed(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range p.conns {
		if x == c {
			return false
		}
	}
	return true
}

// closeAll drops every proxied connection.
func (p *stallProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
