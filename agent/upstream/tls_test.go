package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"github.com/edgeagent/edgeagent/broker/mosquittotest"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	dir                                              string
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	p := testPKI{dir: dir}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeagent test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p.ca = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUplink_transports drains through ssl:// with mutual TLS, wss:// with
// mutual TLS and plain ws:// listeners of one Mosquitto; the subscriber uses
// the plain TCP listener.
func TestUplink_transports(t *testing.T) {
	pki := newTestPKI(t)
	ssl, wss, ws := mosquittotest.FreePort(t), mosquittotest.FreePort(t), mosquittotest.FreePort(t)
	tlsLines := func() []string {
		return []string{"cafile " + pki.ca, "certfile " + pki.serverCert, "keyfile " + pki.serverKey,
			"require_certificate true", "use_identity_as_username true"}
	}
	extra := []string{fmt.Sprintf("listener %d 127.0.0.1", ssl)}
	extra = append(extra, tlsLines()...)
	extra = append(extra, fmt.Sprintf("listener %d 127.0.0.1", wss), "protocol websockets")
	extra = append(extra, tlsLines()...)
	extra = append(extra, fmt.Sprintf("listener %d 127.0.0.1", ws), "protocol websockets")
	m := mosquittotest.Start(t, mosquittotest.Options{Extra: extra})

	for i, tc := range []struct {
		name string
		url  string
		tls  bool
	}{
		{"ssl", fmt.Sprintf("ssl://127.0.0.1:%d", ssl), true},
		{"wss", fmt.Sprintf("wss://127.0.0.1:%d/mqtt", wss), true},
		{"ws", fmt.Sprintf("ws://127.0.0.1:%d/mqtt", ws), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := "gw" + tc.name
			sub := subscribe(t, m.URL(), "edgeagent/"+gw+"/alerts/#")
			ob := openStore(t, "")
			as, want := alertBurst(tc.name, 300, 3)
			for j := range as {
				as[j].Gateway = gw
			}
			ob.write(t, as)
			opts := Options{URL: tc.url, Gateway: gw, ClientID: fmt.Sprintf("uplink-%d", i)}
			if tc.tls {
				opts.CAFile, opts.CertFile, opts.KeyFile = pki.ca, pki.clientCert, pki.clientKey
			}
			u, reg := startUplink(t, ob, opts)
			sub.waitDistinct(len(as), 30*time.Second)
			waitFor(t, 10*time.Second, "outbox empty", func() bool { return depth(ob) == 0 })
			sub.checkOrder(want)
			if got := counter(t, reg, "edgeagent_upstream_published_total"); got != float64(len(as)) {
				t.Errorf("published_total = %v, want %d", got, len(as))
			}
			if !u.State().Connected {
				t.Errorf("State() = %+v", u.State())
			}
		})
	}

	t.Run("ssl without client certificate is refused", func(t *testing.T) {
		ob := openStore(t, "")
		u, reg := startUplink(t, ob, Options{URL: fmt.Sprintf("ssl://127.0.0.1:%d", ssl), CAFile: pki.ca})
		waitFor(t, 10*time.Second, "a failed connect", func() bool { return u.State().LastError != "" })
		if u.State().Connected || counter(t, reg, "edgeagent_upstream_connects_total") != 0 {
			t.Errorf("connected without a client certificate: %+v", u.State())
		}
	})
	t.Run("ssl with an unknown CA is refused", func(t *testing.T) {
		other := newTestPKI(t)
		ob := openStore(t, "")
		u, _ := startUplink(t, ob, Options{URL: fmt.Sprintf("ssl://127.0.0.1:%d", ssl),
			CAFile: other.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey})
		waitFor(t, 10*time.Second, "a failed connect", func() bool { return u.State().LastError != "" })
		if st := u.State(); st.Connected || !strings.Contains(st.LastError, "certificate") {
			t.Errorf("State() = %+v, want a certificate error", st)
		}
	})
}

func TestNew_badTLSFiles(t *testing.T) {
	ob := openStore(t, "")
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"missing ca", Options{CAFile: "/nonexistent/ca.pem"}, "ca_file"},
		{"cert without key", Options{CertFile: "/x.pem"}, "cert_file and key_file"},
		{"bad scheme", Options{URL: "http://x:1"}, "scheme"},
		{"bad forward", Options{Forward: []string{"everything"}}, "forward"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.URL == "" {
				o.URL = "ssl://127.0.0.1:1"
			}
			o.Gateway = "gw1"
			_, err := New(ob, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%+v) = %v; want an error about %q", o, err, tc.want)
			}
		})
	}
}
