package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helpers that run the real binary as a child process (natively or under
// qemu-user) and talk to it the way systemd and sensors do.

// buildAgent compiles cmd/edgeagent for goos/goarch (goarm for arm) into the
// test's temp dir, statically and stripped like `make cross`.
func buildAgent(t *testing.T, goarch, goarm string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "edgeagent-"+goarch+goarm)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test-"+goarch+goarm, "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s%s: %v\n%s", goarch, goarm, err, b)
	}
	return out
}

// syncBuffer collects a child's log output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type agentProc struct {
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan struct{}
	err        error // valid once exited is closed
	mqtt, http string
}

var startedRe = regexp.MustCompile(`msg="edgeagent started".* mqtt=(\S+) http=(\S+)`)

// startAgent runs argv (the binary, or qemu and the binary) with extra env
// and waits for its "edgeagent started" log line. The child is killed when
// the test ends if it is still running.
func startAgent(t *testing.T, argv []string, env ...string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: exec.Command(argv[0], argv[1:]...), log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", p.log)
		}
	})
	deadline := time.After(60 * time.Second)
	for {
		if m := startedRe.FindStringSubmatch(p.log.String()); m != nil {
			p.mqtt, p.http = m[1], m[2]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("agent exited before starting: %v\n%s", p.err, p.log)
		case <-deadline:
			t.Fatalf("agent did not start\n%s", p.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitLog waits until the child's log contains every one of parts on one line.
func (p *agentProc) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.log.String(), "\n") {
			ok := true
			for _, s := range parts {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return line
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line with %q", parts)
	return ""
}

func (p *agentProc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the child to exit and returns its error (nil: status 0).
func (p *agentProc) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit")
		return nil
	}
}

// mosquittoPub publishes one QoS 1 message with the mosquitto client.
func mosquittoPub(t *testing.T, addr, topic, msg string, extra ...string) error {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Fatal("mosquitto_pub not installed: run `make deps` (Debian package mosquitto-clients)")
	}
	host, port, _ := net.SplitHostPort(addr)
	args := append([]string{"-h", host, "-p", port, "-q", "1", "-t", topic, "-m", msg}, extra...)
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("mosquitto_pub: %v: %s", err, out)
	}
	return nil
}

// notifySocket is a real unixgram socket like systemd's NOTIFY_SOCKET.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ea") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done; os.RemoveAll(dir) })
	return path, ch
}

// nextDatagram waits for a datagram for which match is true, skipping others.
func nextDatagram(t *testing.T, ch <-chan string, what string, match func(string) bool) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-ch:
			if match(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("no sd_notify datagram: %s", what)
			return ""
		}
	}
}

func writeConfig(t *testing.T, path, yaml string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}
