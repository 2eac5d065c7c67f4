package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// TokenFileName is the token generated in the data directory when the
// listener is not loopback and no http.token_file is configured.
const TokenFileName = "http.token"

// ResolveToken returns the API token and where it came from:
//   - tokenFile set: its trimmed content (an empty file is an error);
//   - else, listen not on loopback: dataDir/http.token, created with 32
//     random bytes (hex, mode 0600) on first start and reused afterwards;
//   - else "" (loopback only: no token).
func ResolveToken(tokenFile, dataDir, listen string) (token, source string, err error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", "", fmt.Errorf("http.token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", "", fmt.Errorf("http.token_file: %s is empty", tokenFile)
		}
		if err := validToken(token, "http.token_file"); err != nil {
			return "", "", err
		}
		return token, tokenFile, nil
	}
	if IsLoopback(listen) {
		return "", "", nil
	}
	p := filepath.Join(dataDir, TokenFileName)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if token = strings.TrimSpace(string(b)); token != "" {
			if err := validToken(token, p); err != nil {
				return "", "", err
			}
			return token, p, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", fmt.Errorf("http token %s: %w", p, err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand doc)
	token = hex.EncodeToString(raw[:])
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("http token %s: %w", p, err)
	}
	return token, p, nil
}

// validToken requires characters that survive an HTTP header and a
// WebSocket subprotocol (RFC 7230 token characters).
func validToken(t, where string) error {
	for _, r := range t {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return fmt.Errorf("%s: token contains %q; use letters, digits and -._~+!#$%%&'*^`|", where, r)
		}
	}
	return nil
}

// IsLoopback reports whether the listen address ("host:port") binds only
// to loopback. An empty host (all interfaces) is not loopback.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		host = listen
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OriginHosts turns CORS origins ("https://host:port") into the host
// patterns coder/websocket matches Origin against.
func OriginHosts(origins []string) []string {
	var out []string
	for _, o := range origins {
		if u, err := url.Parse(o); err == nil && u.Host != "" {
			out = append(out, u.Host)
		}
	}
	return out
}
