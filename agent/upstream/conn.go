package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// newClient builds a fresh paho client for one connection cycle. lost
// receives the error when paho sees the link drop (buffered, at most once).
func (u *Uplink) newClient(lost chan<- error) (mqtt.Client, error) {
	pu, err := url.Parse(u.opts.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	tc, err := u.tlsConfig(pu)
	if err != nil {
		return nil, err
	}
	o := mqtt.NewClientOptions().
		AddBroker(u.opts.URL).
		SetClientID(u.opts.ClientID).
		SetUsername(u.opts.Username).
		SetPassword(u.opts.Password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(u.opts.KeepAlive).
		SetPingTimeout(min(u.opts.KeepAlive, 10*time.Second)).
		SetConnectTimeout(u.opts.ConnectTimeout).
		SetWriteTimeout(u.opts.WriteTimeout).
		SetOrderMatters(false).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	if u.forward[LaneStatus] {
		o.SetBinaryWill(u.status, []byte("offline"), 1, true)
	}
	return mqtt.NewClient(o), nil
}

// tlsConfig returns the TLS settings for ssl:// and wss:// URLs (nil for
// plain ones): CAFile as roots when set, CertFile/KeyFile as client identity.
func (u *Uplink) tlsConfig(pu *url.URL) (*tls.Config, error) {
	switch pu.Scheme {
	case "ssl", "tls", "mqtts", "wss":
	default:
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: pu.Hostname()}
	if u.opts.CAFile != "" {
		pem, err := os.ReadFile(u.opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream: ca_file %q: no PEM certificate found", u.opts.CAFile)
		}
		tc.RootCAs = pool
	}
	if (u.opts.CertFile == "") != (u.opts.KeyFile == "") {
		return nil, fmt.Errorf("upstream: cert_file and key_file must be set together")
	}
	if u.opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(u.opts.CertFile, u.opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstream: cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
