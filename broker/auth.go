package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

// HashCost is the bcrypt cost HashPassword uses.
const HashCost = 10

// HashPassword returns the bcrypt hash (cost 10) of pw, for User.PasswordHash
// and the `edgeagent passwd` command.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), HashCost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// authConfig is an immutable snapshot of who may connect and what they may do.
type authConfig struct {
	allowAnon bool
	users     map[string]*account
}

type account struct {
	hash      []byte
	publish   []string
	subscribe []string
}

func newAuthConfig(allowAnon bool, users []User) *authConfig {
	c := &authConfig{allowAnon: allowAnon, users: make(map[string]*account, len(users))}
	for _, u := range users {
		c.users[u.Username] = &account{
			hash:      []byte(u.PasswordHash),
			publish:   append([]string(nil), u.Publish...),
			subscribe: append([]string(nil), u.Subscribe...),
		}
	}
	return c
}

// dummyHash is compared against when the username is unknown, so an unknown
// user costs as much as a wrong password (no user enumeration by timing).
var dummyHash = []byte("$2a$10$s45C4/eoyFT3TIOl38Eyo.dQvn6Ew42FPGhHXskOKv3wYjX3cVGri")

// maxAuthCache bounds the verified-credential cache; it is cleared when full.
const maxAuthCache = 4096

// authHook is the only hook providing OnConnectAuthenticate and OnACLCheck.
// Default deny: a user may publish to topics matching its Publish filters and
// subscribe to filters inside its Subscribe filters; anonymous clients (no
// username) may do anything, but only while allowAnon is set.
type authHook struct {
	mqtt.HookBase
	cfg     atomic.Pointer[authConfig]
	metrics *metrics
	limit   *rateLog

	secret [32]byte      // keys the cache so it never holds a plain hash of a password
	sem    chan struct{} // bounds concurrent bcrypt verifications
	mu     sync.Mutex
	cache  map[[32]byte]string // hmac(username, password) -> hash it verified against
}

func newAuthHook(allowAnon bool, users []User, m *metrics, limit *rateLog) *authHook {
	h := &authHook{
		metrics: m,
		limit:   limit,
		sem:     make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		cache:   make(map[[32]byte]string),
	}
	_, _ = rand.Read(h.secret[:])
	h.cfg.Store(newAuthConfig(allowAnon, users))
	return h
}

func (h *authHook) ID() string { return "edgeagent-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	cfg := h.cfg.Load()
	user := string(pk.Connect.Username)
	if user == "" {
		if cfg.allowAnon {
			return true
		}
		h.fail(cl, user, "anonymous not allowed")
		return false
	}
	acc := cfg.users[user]
	if acc == nil {
		h.verify(dummyHash, pk.Connect.Password)
		h.fail(cl, user, "unknown user")
		return false
	}
	key := h.key(user, pk.Connect.Password)
	h.mu.Lock()
	cached, ok := h.cache[key]
	h.mu.Unlock()
	if ok && cached == string(acc.hash) {
		return true
	}
	if !h.verify(acc.hash, pk.Connect.Password) {
		h.fail(cl, user, "wrong password")
		return false
	}
	h.mu.Lock()
	if len(h.cache) >= maxAuthCache {
		clear(h.cache)
	}
	h.cache[key] = string(acc.hash)
	h.mu.Unlock()
	return true
}

func (h *authHook) verify(hash, pw []byte) bool {
	h.sem <- struct{}{}
	defer func() { <-h.sem }()
	return bcrypt.CompareHashAndPassword(hash, pw) == nil
}

func (h *authHook) key(user string, pw []byte) [32]byte {
	m := hmac.New(sha256.New, h.secret[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write(pw)
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (h *authHook) fail(cl *mqtt.Client, user, reason string) {
	h.metrics.authFailures.Inc()
	h.limit.log("mqtt authentication failed", "username", user, "reason", reason, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	cfg := h.cfg.Load()
	if len(cl.Properties.Username) == 0 {
		return cfg.allowAnon
	}
	acc := cfg.users[string(cl.Properties.Username)]
	if acc == nil {
		return false // removed by a reload
	}
	if write {
		for _, f := range acc.publish {
			if covers(f, topic) {
				return true
			}
		}
		return false
	}
	topic = stripShare(topic)
	for _, f := range acc.subscribe {
		if covers(f, topic) {
			return true
		}
	}
	return false
}

// stripShare turns "$share/group/filter" into "filter".
func stripShare(f string) string {
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return rest[i+1:]
		}
	}
	return f
}

// covers reports whether every topic matched by filter sub (a topic name is a
// filter without wildcards) is also matched by the allowed filter pattern.
// Wildcards in the first level never cover a level starting with '$'.
func covers(pattern, sub string) bool {
	if strings.HasPrefix(sub, "$") && (strings.HasPrefix(pattern, "+") || strings.HasPrefix(pattern, "#")) {
		return false
	}
	for {
		p, prest, pmore := strings.Cut(pattern, "/")
		s, srest, smore := strings.Cut(sub, "/")
		switch p {
		case "#":
			return true
		case "+":
			if s == "#" {
				return false
			}
		default:
			if s != p {
				return false
			}
		}
		switch {
		case !pmore && !smore:
			return true
		case !pmore:
			return false
		case !smore:
			return prest == "#" // "a/#" also matches "a" itself
		}
		pattern, sub = prest, srest
	}
}

// rateLog logs at most one line per interval and counts what it suppressed.
type rateLog struct {
	out     func(msg string, args ...any)
	every   time.Duration
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (r *rateLog) log(msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.dropped++
		r.mu.Unlock()
		return
	}
	n := r.dropped
	r.last, r.dropped = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.out(msg, args...)
}
