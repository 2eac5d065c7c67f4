package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

const waitLong = 10 * time.Second

// recorder is a Handler that records messages; fail decides the result.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
	got  chan Message
	fail func(Message) error
}

func newRecorder() *recorder { return &recorder{got: make(chan Message, 1000)} }

func (r *recorder) handle(_ context.Context, m Message) (Pending, error) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	fail := r.fail
	r.mu.Unlock()
	r.got <- m
	if fail != nil {
		return nil, fail(m)
	}
	return nil, nil
}

func (r *recorder) next(t *testing.T) Message {
	t.Helper()
	select {
	case m := <-r.got:
		return m
	case <-time.After(waitLong):
		t.Fatal("handler saw no message")
		return Message{}
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func startBroker(t testing.TB, opts Options) *Broker {
	t.Helper()
	if opts.Listen == "" && opts.TLSListen == "" && opts.WSListen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

type clientOpt func(*paho.ClientOptions)

func withAuth(u, p string) clientOpt {
	return func(o *paho.ClientOptions) { o.SetUsername(u).SetPassword(p) }
}

func newClient(url, id string, opts ...clientOpt) (paho.Client, chan error) {
	lost := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(waitLong).SetProtocolVersion(4).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	for _, f := range opts {
		f(o)
	}
	return paho.NewClient(o), lost
}

// connect returns a connected 3.1.1 client that is disconnected at cleanup.
func connect(t testing.TB, url, id string, opts ...clientOpt) (paho.Client, chan error) {
	t.Helper()
	c, lost := newClient(url, id, opts...)
	if err := waitTok(c.Connect()); err != nil {
		t.Fatalf("connect %s as %s: %v", url, id, err)
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, lost
}

func waitTok(tok paho.Token) error {
	if !tok.WaitTimeout(waitLong) {
		return errors.New("token timed out")
	}
	return tok.Error()
}

func tcpURL(b *Broker) string { return "tcp://" + b.Addr("tcp").String() }

func subscribe(t *testing.T, c paho.Client, filter string) chan paho.Message {
	t.Helper()
	ch := make(chan paho.Message, 100)
	if err := waitTok(c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { ch <- m })); err != nil {
		t.Fatal(err)
	}
	return ch
}

func recv(t *testing.T, ch chan paho.Message) paho.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitLong):
		t.Fatal("subscriber got nothing")
		return nil
	}
}

func TestBroker_Handler_seesPublishes(t *testing.T) {
	rec := newRecorder()
	reg := prometheus.NewRegistry()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: rec.handle, Registerer: reg})
	c, _ := connect(t, tcpURL(b), "sensor-a")

	for _, tt := range []struct {
		topic   string
		qos     byte
		retain  bool
		payload string
	}{
		{"sensors/a/temperature", 0, false, "21.5"},
		{"sensors/a/humidity", 1, true, `{"value":40}`},
		{"sensors/a/pressure", 2, false, "1013"},
	} {
		if err := waitTok(c.Publish(tt.topic, tt.qos, tt.retain, tt.payload)); err != nil {
			t.Fatal(err)
		}
		m := rec.next(t)
		want := Message{Topic: tt.topic, Payload: []byte(tt.payload), QoS: min(tt.qos, 1), Retained: tt.retain, ClientID: "sensor-a"}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("Handler got %+v; want %+v", m, want)
		}
	}
	if n := b.ClientsConnected(); n != 1 {
		t.Errorf("ClientsConnected() = %d; want 1", n)
	}
	if v := metric(t, reg, "edgeagent_mqtt_clients_connected"); v != 1 {
		t.Errorf("clients_connected = %v; want 1", v)
	}
	if err := b.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
}

// metric reads the single-sample counter or gauge name from reg.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestBroker_PubackOnlyAfterHandlerReturns(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	b := startBroker(t, Options{AllowAnonymous: true, Handler: func(context.Context, Message) (Pending, error) {
		close(entered)
		<-release
		return nil, nil
	}})
	c, _ := connect(t, tcpURL(b), "slow")
	tok := c.Publish("sensors/s/t", 1, false, "1")
	select {
	case <-entered:
	case <-time.After(waitLong):
		t.Fatal("handler not called")
	}
	select {
	case <-tok.Done():
		t.Fatal("PUBACK arrived while the handler was still running")
	default:
	}
	close(release)
	if err := waitTok(tok); err != nil {
		t.Fatalf("publish after handler returned: %v", err)
	}
}

func TestBroker_HandlerError_noPubackAndDisconnect(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := newRecorder()
	rec.fail = func(m Message) error {
		if string(m.Payload) == "bad" {
			return errors.New("disk full")
		}
		return nil
	}
	b := startBroker(t, Options{AllowAnonymous: true, Handler: rec.handle, Registerer: reg})
	sub, _ := connect(t, tcpURL(b), "watcher")
	got := subscribe(t, sub, "sensors/#")

	pub, lost := connect(t, tcpURL(b), "sensor-bad")
	tok := pub.Publish("sensors/x/t", 1, false, "bad")
	if err := waitTok(tok); err == nil {
		t.Fatal("publish refused by the handler was acknowledged")
	}
	select {
	case <-lost:
	case <-time.After(waitLong):
		t.Fatal("3.1.1 publisher not disconnected after a refused publish")
	}

	good, _ := connect(t, tcpURL(b), "sensor-good")
	if err := waitTok(good.Publish("sensors/y/t", 1, false, "good")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got); string(m.Payload()) != "good" {
		t.Errorf("subscriber first got %q; the refused message must not be delivered", m.Payload())
	}
	if v := metric(t, reg, "edgeagent_mqtt_publish_rejected_total"); v != 1 {
		t.Errorf("publish_rejected_total = %v; want 1", v)
	}
}

func TestBroker_otherSubscribersReceiveSensorTopics(t *testing.T) {
	rec := newRecorder()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: rec.handle})
	sub, _ := connect(t, tcpURL(b), "dashboard")
	got := subscribe(t, sub, "sensors/+/temperature")
	pub, _ := connect(t, tcpURL(b), "sensor-1")
	if err := waitTok(pub.Publish("sensors/1/temperature", 1, false, "22.5")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got); m.Topic() != "sensors/1/temperature" || string(m.Payload()) != "22.5" {
		t.Errorf("subscriber got %s %q", m.Topic(), m.Payload())
	}
	if m := rec.next(t); m.Topic != "sensors/1/temperature" {
		t.Errorf("handler got %q", m.Topic)
	}

	// The agent's own publishes reach subscribers but not the Handler.
	sub2 := subscribe(t, sub, "edgeagent/#")
	if err := b.Publish("edgeagent/gw/status", []byte("online"), false, 0); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub2); string(m.Payload()) != "online" {
		t.Errorf("inline publish delivered %q", m.Payload())
	}
	if n := rec.count(); n != 1 {
		t.Errorf("handler saw %d messages; the inline publish must skip it", n)
	}
}

// hashT hashes with the minimum bcrypt cost: -race makes cost 10 take seconds.
func hashT(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != HashCost {
		t.Errorf("Cost(%q) = %d, %v; want %d", h, cost, err, HashCost)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Error("hash does not verify its password")
	}
}

func TestBroker_auth(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := newRecorder()
	users := []User{
		{Username: "s1", PasswordHash: hashT(t, "pw1"), Publish: []string{"sensors/s1/#"}},
		{Username: "ops", PasswordHash: hashT(t, "pw2"), Subscribe: []string{"sensors/+/temperature", "alerts/#"}},
	}
	b := startBroker(t, Options{Users: users, Handler: rec.handle, Registerer: reg})
	url := tcpURL(b)

	for _, tt := range []struct{ name, user, pw string }{
		{"wrong password", "s1", "nope"},
		{"unknown user", "ghost", "pw1"},
		{"anonymous", "", ""},
		{"other user's password", "ops", "pw1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newClient(url, "x", withAuth(tt.user, tt.pw))
			if err := waitTok(c.Connect()); err == nil {
				c.Disconnect(0)
				t.Fatalf("Connect(%q, %q) succeeded; want refused", tt.user, tt.pw)
			}
		})
	}
	// An unknown user is checked against a dummy cost-10 hash (so it takes as
	// long as a wrong password); under -race the client may give up first, so
	// the count can land after Connect returned.
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, reg, "edgeagent_mqtt_auth_failures_total") < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if v := metric(t, reg, "edgeagent_mqtt_auth_failures_total"); v != 4 {
		t.Errorf("auth_failures_total = %v; want 4", v)
	}

	// Right password, twice (the second one from the cache).
	s1, lost := connect(t, url, "s1-a", withAuth("s1", "pw1"))
	connect(t, url, "s1-b", withAuth("s1", "pw1"))
	ops, _ := connect(t, url, "ops", withAuth("ops", "pw2"))

	t.Run("subscribe ACL", func(t *testing.T) {
		for _, tt := range []struct {
			filter string
			ok     bool
		}{
			{"sensors/+/temperature", true},
			{"sensors/kitchen/temperature", true},
			{"alerts/gw/x", true},
			{"sensors/#", false},
			{"sensors/+/humidity", false},
			{"#", false},
			{"$SYS/#", false},
		} {
			tok := ops.Subscribe(tt.filter, 1, func(paho.Client, paho.Message) {})
			if err := waitTok(tok); err != nil {
				t.Fatal(err)
			}
			code := tok.(*paho.SubscribeToken).Result()[tt.filter]
			if ok := code < 0x80; ok != tt.ok {
				t.Errorf("Subscribe(%q) granted=%v (code %#x); want %v", tt.filter, ok, code, tt.ok)
			}
		}
		// s1 may not subscribe at all.
		tok := s1.Subscribe("sensors/s1/#", 0, nil)
		if err := waitTok(tok); err != nil {
			t.Fatal(err)
		}
		if code := tok.(*paho.SubscribeToken).Result()["sensors/s1/#"]; code != 0x80 {
			t.Errorf("s1 Subscribe code %#x; want 0x80", code)
		}
	})

	t.Run("publish ACL", func(t *testing.T) {
		if err := waitTok(s1.Publish("sensors/s1/temperature", 1, false, "20")); err != nil {
			t.Fatal(err)
		}
		if m := rec.next(t); m.Topic != "sensors/s1/temperature" {
			t.Fatalf("handler got %q", m.Topic)
		}
		// Outside the filter: a 3.1.1 QoS 1 publish gets no PUBACK and the client is dropped.
		if err := waitTok(s1.Publish("actuators/valve1/set", 1, false, "open")); err == nil {
			t.Error("publish outside the user's filters was acknowledged")
		}
		select {
		case <-lost:
		case <-time.After(waitLong):
			t.Error("client not disconnected after an unauthorized publish")
		}
		if n := rec.count(); n != 1 {
			t.Errorf("handler saw %d messages; want 1 (the denied one must not reach it)", n)
		}
	})

	t.Run("reload", func(t *testing.T) {
		b.SetUsers(false, users[1:])
		c, _ := newClient(url, "s1-c", withAuth("s1", "pw1"))
		if err := waitTok(c.Connect()); err == nil {
			c.Disconnect(0)
			t.Fatal("removed user could still connect")
		}
		b.SetUsers(true, users[1:])
		connect(t, url, "anon")
	})
}

func TestCovers(t *testing.T) {
	for _, tt := range []struct {
		pattern, sub string
		want         bool
	}{
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/b", "$SYS/b", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a/b/c", false},
		{"a/b", "a/+", false},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"+/+", "x/y", true},
		{"sensors/+/t", "sensors//t", true},
	} {
		if got := covers(tt.pattern, tt.sub); got != tt.want {
			t.Errorf("covers(%q, %q) = %v; want %v", tt.pattern, tt.sub, got, tt.want)
		}
	}
	if got := stripShare("$share/g/sensors/#"); got != "sensors/#" {
		t.Errorf("stripShare = %q", got)
	}
}

func TestBroker_maxPacket(t *testing.T) {
	rec := newRecorder()
	b := startBroker(t, Options{AllowAnonymous: true, MaxPacket: 1024, Handler: rec.handle})
	c, lost := connect(t, tcpURL(b), "big")
	if err := waitTok(c.Publish("sensors/a/t", 1, false, strings.Repeat("x", 900))); err != nil {
		t.Fatal(err)
	}
	rec.next(t)
	if err := waitTok(c.Publish("sensors/a/t", 1, false, strings.Repeat("x", 2000))); err == nil {
		t.Error("oversized publish acknowledged")
	}
	select {
	case <-lost:
	case <-time.After(waitLong):
		t.Fatal("client sending an oversized packet not disconnected")
	}
	if n := rec.count(); n != 1 {
		t.Errorf("handler saw %d messages; want 1", n)
	}
}

func TestBroker_connectTimeout(t *testing.T) {
	b := startBroker(t, Options{AllowAnonymous: true, ConnectTimeout: 200 * time.Millisecond, WSListen: "127.0.0.1:0", Listen: "127.0.0.1:0"})
	for _, l := range []string{"tcp", "ws"} {
		conn, err := net.Dial("tcp", b.Addr(l).String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(waitLong))
		_, err = conn.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: silent connection still open after %v", l, waitLong)
		} else if err == nil {
			t.Errorf("%s: read returned data", l)
		}
	}
	// A real client is unaffected: its deadline is replaced after CONNECT.
	c, lost := connect(t, tcpURL(b), "ok", func(o *paho.ClientOptions) { o.SetKeepAlive(5 * time.Second) })
	time.Sleep(400 * time.Millisecond)
	select {
	case err := <-lost:
		t.Fatalf("connected client dropped: %v", err)
	default:
	}
	if err := waitTok(c.Publish("a", 1, false, "x")); err != nil {
		t.Fatal(err)
	}
}

func TestBroker_TLS(t *testing.T) {
	dir := t.TempDir()
	pool, certFile, keyFile := testCA(t, dir)
	rec := newRecorder()
	b := startBroker(t, Options{TLSListen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile, AllowAnonymous: true, Handler: rec.handle})
	if b.Addr("tcp") != nil {
		t.Errorf("Addr(tcp) = %v; want nil (not configured)", b.Addr("tcp"))
	}
	c, _ := connect(t, "ssl://"+b.Addr("tls").String(), "tls-sensor", func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	})
	if err := waitTok(c.Publish("sensors/tls/t", 1, false, "1")); err != nil {
		t.Fatal(err)
	}
	if m := rec.next(t); m.Topic != "sensors/tls/t" {
		t.Errorf("handler got %q", m.Topic)
	}
	// A client that does not trust the CA fails the handshake.
	bad, _ := newClient("ssl://"+b.Addr("tls").String(), "untrusting", func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: x509.NewCertPool()})
	})
	if err := waitTok(bad.Connect()); err == nil {
		bad.Disconnect(0)
		t.Error("TLS connect with an unknown CA succeeded")
	}
}

// testCA writes a server certificate for 127.0.0.1 signed by a fresh CA.
func testCA(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeagent test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

func TestBroker_WebSocket(t *testing.T) {
	rec := newRecorder()
	b := startBroker(t, Options{WSListen: "127.0.0.1:0", AllowAnonymous: true, Handler: rec.handle})
	url := "ws://" + b.Addr("ws").String() + "/mqtt"
	sub, _ := connect(t, url, "ws-watcher")
	got := subscribe(t, sub, "sensors/#")
	c, _ := connect(t, url, "ws-sensor")
	payload := strings.Repeat("y", 5000) // spans several reads
	if err := waitTok(c.Publish("sensors/ws/t", 1, false, payload)); err != nil {
		t.Fatal(err)
	}
	if m := rec.next(t); m.Topic != "sensors/ws/t" || string(m.Payload) != payload {
		t.Errorf("handler got %q (%d bytes)", m.Topic, len(m.Payload))
	}
	if m := recv(t, got); string(m.Payload()) != payload {
		t.Errorf("ws subscriber got %d bytes", len(m.Payload()))
	}
	// Plain HTTP without an upgrade is refused, not served.
	conn, err := net.Dial("tcp", b.Addr("ws").String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(waitLong))
	resp, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(resp), "HTTP/1.1 400") {
		t.Errorf("plain GET answered %q; want 400", resp)
	}
}

func TestBroker_mosquittoPub(t *testing.T) {
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatal("mosquitto_pub not installed: run `make deps` (Debian package mosquitto-clients)")
	}
	rec := newRecorder()
	b := startBroker(t, Options{Handler: rec.handle, Users: []User{{Username: "s1", PasswordHash: hashT(t, "pw1"), Publish: []string{"sensors/#"}}}})
	_, port, _ := net.SplitHostPort(b.Addr("tcp").String())
	out, err := exec.Command(bin, "-h", "127.0.0.1", "-p", port, "-u", "s1", "-P", "pw1", "-q", "1", "-t", "sensors/boiler/temperature", "-m", "71.5").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	if m := rec.next(t); m.Topic != "sensors/boiler/temperature" || string(m.Payload) != "71.5" || m.QoS != 1 {
		t.Errorf("handler got %+v", m)
	}
	out, err = exec.Command(bin, "-h", "127.0.0.1", "-p", port, "-u", "s1", "-P", "bad", "-t", "sensors/x", "-m", "1").CombinedOutput()
	if err == nil {
		t.Errorf("mosquitto_pub with a wrong password succeeded: %s", out)
	}
}

func TestBroker_Start_bindError(t *testing.T) {
	b1 := startBroker(t, Options{AllowAnonymous: true})
	b2, err := New(Options{Listen: "127.0.0.1:0", WSListen: b1.Addr("tcp").String(), AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if err := b2.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "ws") {
		t.Fatalf("Start on a used port = %v; want an error naming the ws listener", err)
	}
	if err := b2.Ready(); err == nil {
		t.Error("Ready() = nil after a failed Start")
	}
}

// With no subscriber the broker skips mochi's fan-out; a subscriber that
// comes later must still get the retained message and every publish sent
// after its SUBACK, also after unsubscribing and subscribing again, and
// publishers are acknowledged either way.
func TestBroker_fanOutFollowsSubscriptions(t *testing.T) {
	rec := newRecorder()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: rec.handle})
	pub, _ := connect(t, tcpURL(b), "sensor-1")
	publish := func(topic string, qos byte, retain bool, payload string) {
		t.Helper()
		if err := waitTok(pub.Publish(topic, qos, retain, payload)); err != nil {
			t.Fatalf("publish %q: %v", payload, err)
		}
		if m := rec.next(t); string(m.Payload) != payload {
			t.Fatalf("handler got %q; want %q", m.Payload, payload)
		}
	}
	publish("sensors/1/t", 0, false, "unseen-0")
	publish("sensors/1/t", 1, false, "unseen-1")
	publish("sensors/1/state", 1, true, "retained")

	sub, _ := connect(t, tcpURL(b), "dashboard")
	got := subscribe(t, sub, "sensors/#")
	if m := recv(t, got); string(m.Payload()) != "retained" {
		t.Fatalf("new subscriber first got %q; want the retained message", m.Payload())
	}
	publish("sensors/1/t", 0, false, "live-0")
	// mochi fans a message out after its PUBACK, so the retained one may
	// also arrive live if the subscription came in between.
	for m := recv(t, got); string(m.Payload()) != "live-0"; m = recv(t, got) {
		if string(m.Payload()) != "retained" {
			t.Fatalf("subscriber got %q; want live-0", m.Payload())
		}
	}

	if err := waitTok(sub.Unsubscribe("sensors/#")); err != nil {
		t.Fatal(err)
	}
	publish("sensors/1/t", 1, false, "gap")
	got2 := subscribe(t, sub, "sensors/1/t")
	publish("sensors/1/t", 1, false, "live-1")
	if m := recv(t, got2); string(m.Payload()) != "live-1" {
		t.Fatalf("resubscribed subscriber got %q; want live-1", m.Payload())
	}
	select {
	case m := <-got:
		t.Fatalf("unsubscribed filter still delivered %q", m.Payload())
	default:
	}
}

// rawConnect opens a TCP connection and sends an MQTT 3.1.1 CONNECT with
// the given keepalive in seconds, returning once the CONNACK is read.
func rawConnect(t *testing.T, b *Broker, id string, keepalive byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", b.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	pk := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, keepalive, 0, byte(len(id))}
	if _, err := conn.Write(append(pk, id...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(waitLong))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x, %v", ack, err)
	}
	return conn
}

// The keepalive deadline (1.5 × keepalive since the last packet) is
// enforced for a silent client and moved on by every packet of a busy one.
func TestBroker_keepaliveDeadline(t *testing.T) {
	rec := newRecorder()
	b := startBroker(t, Options{AllowAnonymous: true, Handler: rec.handle})
	silent := rawConnect(t, b, "silent", 1)
	busy := rawConnect(t, b, "busy", 1)

	dropped := make(chan error, 1)
	go func() {
		_, err := silent.Read(make([]byte, 1)) // deadline: waitLong
		dropped <- err
	}()
	publish := []byte{0x30, 7, 0, 3, 'a', '/', 'b', '4', '2'}
	for range 10 { // 3 s: twice the deadline, never silent for more than 0.3 s
		if _, err := busy.Write(publish); err != nil {
			t.Fatalf("busy client: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := busy.Write([]byte{0xc0, 0}); err != nil { // PINGREQ
		t.Fatalf("busy client dropped: %v", err)
	}
	resp := make([]byte, 2)
	busy.SetReadDeadline(time.Now().Add(waitLong))
	if _, err := io.ReadFull(busy, resp); err != nil || resp[0] != 0xd0 {
		t.Fatalf("busy client: PINGRESP %x, %v", resp, err)
	}
	var ne net.Error
	if err := <-dropped; err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("silent client: read = %v; want the broker to close the connection", err)
	}
}

// Close returns, and disconnects, while clients are leaving. mochi's own
// close of a listener's clients deadlocked when a leaving client's Delete
// queued for the clients' lock in a window of microseconds
// (Broker.disconnectListener); this rarely hits that window (40 rounds did
// not, before the fix), but holds Close to its promise under the race.
func TestBroker_Close_whileClientsLeave(t *testing.T) {
	for round := range 20 {
		b := startBroker(t, Options{AllowAnonymous: true})
		var conns []net.Conn
		for i := range 32 {
			conns = append(conns, rawConnect(t, b, fmt.Sprintf("r%d-%d", round, i), 60))
		}
		closed := make(chan struct{})
		go func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		go func() { b.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close did not return within 10 s while clients left", round)
		}
	}
}
