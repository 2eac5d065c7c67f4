// Package mosquittotest runs a real Mosquitto broker for tests, so that
// interoperability is tested against the broker people actually run. It
// needs the Debian package mosquitto (`make deps` installs it).
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bin is where Debian installs the broker.
const Bin = "/usr/sbin/mosquitto"

// Options configures a test broker. The zero value is a plain anonymous
// listener on a free port without persistence.
type Options struct {
	// Port of the plain listener on 127.0.0.1; zero picks a free one.
	Port int
	// Persistent keeps retained messages and sessions across Stop/Start
	// (saved on SIGTERM).
	Persistent bool
	// Extra config lines (more listeners, TLS).
	Extra []string
}

// Broker is a Mosquitto process owned by a test; it is stopped at cleanup.
type Broker struct {
	t       testing.TB
	Port    int
	conf    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start runs Mosquitto and returns once it accepts connections. The test
// fails (it is not skipped) when Mosquitto is not installed.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		t.Fatalf("mosquitto not installed: run `make deps` (Debian package mosquitto): %v", err)
	}
	if opts.Port == 0 {
		opts.Port = FreePort(t)
	}
	dir := t.TempDir()
	b := &Broker{t: t, Port: opts.Port, conf: filepath.Join(dir, "mosquitto.conf"), logPath: filepath.Join(dir, "mosquitto.log")}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"per_listener_settings false",
		// Started as root, mosquitto switches to user "mosquitto", which
		// cannot write the temp dir: stay who we are.
		"user " + u.Username,
		"allow_anonymous true",
		fmt.Sprintf("persistence %v", opts.Persistent),
		"persistence_location " + dir + "/",
		"autosave_interval 0",
		"max_queued_messages 0",
		"max_inflight_messages 0",
		"log_dest file " + b.logPath,
		fmt.Sprintf("listener %d 127.0.0.1", b.Port),
	}
	lines = append(lines, opts.Extra...)
	if err := os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// Log returns the broker's log file, for a failing test to show.
func (b *Broker) Log() string {
	out, _ := os.ReadFile(b.logPath)
	return string(out)
}

// URL is the tcp:// URL of the plain listener.
func (b *Broker) URL() string { return "tcp://" + b.Addr() }

// Addr is host:port of the plain listener.
func (b *Broker) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.Port) }

// Start (re)starts a stopped broker on the same port and config.
func (b *Broker) Start() {
	b.t.Helper()
	b.cmd = exec.Command(Bin, "-c", b.conf)
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	b.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(b.cmd, b.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-b.exited:
			log, _ := os.ReadFile(b.logPath)
			b.t.Fatalf("mosquitto exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto not listening on %s: %v", b.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop terminates the broker (SIGTERM: persistent state is saved) and waits.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
	}
	b.cmd = nil
}

// Pub publishes one QoS 1 message with mosquitto_pub (Debian package
// mosquitto-clients) to the broker at addr (host:port).
func Pub(t testing.TB, addr, topic, payload string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", topic, "-m", payload).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub -t %s: %v: %s (run `make deps` if it is missing)", topic, err, out)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
