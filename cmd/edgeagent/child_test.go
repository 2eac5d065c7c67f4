package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The agent binary, built once per test run (without -race, so memory
// figures are the real binary's).
var agentBin struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// TestMain removes the built binary after the package's tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if agentBin.dir != "" {
		os.RemoveAll(agentBin.dir)
	}
	os.Exit(code)
}

func buildNativeAgent(t *testing.T) string {
	t.Helper()
	agentBin.once.Do(func() {
		agentBin.dir, agentBin.err = os.MkdirTemp("", "edgeagent-bin-")
		if agentBin.err != nil {
			return
		}
		agentBin.path = filepath.Join(agentBin.dir, "edgeagent")
		out, err := exec.Command("go", "build", "-o", agentBin.path, ".").CombinedOutput()
		if err != nil {
			agentBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if agentBin.err != nil {
		t.Fatal(agentBin.err)
	}
	return agentBin.path
}

// child is an agent running as a separate process (`edgeagent serve`).
type child struct {
	cmd        *exec.Cmd
	MQTT, HTTP string
	done       chan error
	log        *os.File
}

var startedLine = regexp.MustCompile(`edgeagent started.*mqtt=([0-9.:]+) http=([0-9.:]+)`)

// startChild runs the built agent on config text cfg (written to dir) and
// waits until it has bound its listeners. The child is killed when the test
// ends if it is still running.
func startChild(t *testing.T, dir, cfg string) *child {
	t.Helper()
	bin := buildNativeAgent(t)
	path := filepath.Join(dir, "edgeagent.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(dir, "agent-*.log")
	if err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: exec.Command(bin, "serve", "--config", path), done: make(chan error, 1), log: logf}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if m := startedLine.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m
				sent = true
			}
		}
		c.done <- c.cmd.Wait()
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	select {
	case m := <-found:
		c.MQTT, c.HTTP = m[1], m[2]
	case err := <-c.done:
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("agent exited before starting: %v\n%s", err, b)
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not start within 30s")
	}
	return c
}

func (c *child) Pid() int { return c.cmd.Process.Pid }

// Stop sends SIGTERM and waits for a clean exit.
func (c *child) Stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		if err != nil {
			b, _ := os.ReadFile(c.log.Name())
			t.Errorf("agent exit: %v\n%s", err, b)
		}
	case <-time.After(20 * time.Second):
		t.Error("agent did not stop within 20s of SIGTERM")
		c.cmd.Process.Kill()
		<-c.done
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (c *child) Kill() {
	c.cmd.Process.Kill()
	<-c.done
}

func childConfig(dataDir, extra string) string {
	return fmt.Sprintf("gateway_id: fault-gw\ndata_dir: %s\nlog: {level: info}\nmqtt: {listen: \"127.0.0.1:0\", max_clients: 4096}\nhttp: {listen: \"127.0.0.1:0\"}\n%s", dataDir, extra)
}

// mosquittoProc is a local Mosquitto the uplink publishes to; Stop and Start
// flap it on the same port.
type mosquittoProc struct {
	t    *testing.T
	conf string
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

func startMosquittoProc(t *testing.T, dir string) *mosquittoProc {
	t.Helper()
	const bin = "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("mosquitto not installed (make deps): %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	u, _ := user.Current()
	m := &mosquittoProc{t: t, conf: filepath.Join(dir, "mosquitto.conf"), Port: port}
	conf := fmt.Sprintf("user %s\nallow_anonymous true\npersistence false\nlog_dest none\nlistener %d 127.0.0.1\n", u.Username, port)
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func (m *mosquittoProc) Start() {
	m.cmd = exec.Command("/usr/sbin/mosquitto", "-c", m.conf)
	if err := m.cmd.Start(); err != nil {
		m.t.Error(err)
		return
	}
	m.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(m.cmd, m.done)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.Port)); err == nil {
			c.Close()
			return
		}
	}
	m.t.Errorf("mosquitto not listening on %d", m.Port)
}

func (m *mosquittoProc) Stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}
