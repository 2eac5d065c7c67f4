package storage_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

const crashEnv = "EDGEAGENT_STORAGE_CRASH_CHILD"

// TestCrashChild is the child of TestDB_crash: it writes readings and alerts
// as fast as it can and prints "ACK <seq> <alert>" each time everything up
// to reading seq and alert number alert is durable. It does nothing unless
// started by TestDB_crash.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("child of TestDB_crash only")
	}
	run, _ := strconv.Atoi(os.Getenv(crashEnv + "_RUN"))
	// the parent's t0: this process's own is an hour later when the two
	// start on either side of the hour
	t0ns, err := strconv.ParseInt(os.Getenv(crashEnv+"_T0"), 10, 64)
	if err != nil {
		fmt.Println("ERR t0:", err)
		os.Exit(2)
	}
	t0 := time.Unix(0, t0ns).UTC()
	db, err := storage.Open(path, storage.Options{Outbox: true})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	base := run * 1_000_000_000
	acks := make(chan [2]int, 1024)
	commits := make(chan *agent.Commit, 1024)
	go func() {
		for c := range commits {
			ack := <-acks
			if err := c.Wait(context.Background()); err != nil {
				fmt.Println("ERR", err)
				os.Exit(3)
			}
			fmt.Printf("ACK %d %d\n", ack[0], ack[1])
		}
	}()
	seq, alertN := base, 0
	for i := 0; ; i++ {
		rs := make([]agent.Result, 500)
		for j := range rs {
			rs[j] = res(fmt.Sprintf("s%d", seq%10), t0.Add(time.Duration(seq-base)*time.Millisecond+time.Duration(run)*time.Hour), float64(seq))
			seq++
		}
		var as []agent.Alert
		if i%10 == 0 { // a QoS 1 message and an alert every 10 writes
			c := agent.NewCommit(1)
			rs[len(rs)-1].Commit = c
			alertN++
			as = append(as, alert(fmt.Sprintf("run%d-%06d", run, alertN), "s0", agent.AlertFiring, t0))
			db.Write(rs, as)
			acks <- [2]int{seq - 1, alertN}
			commits <- c
			continue
		}
		db.Write(rs, nil)
	}
}

// TestDB_crash kills a writing child with SIGKILL several times in a row and
// checks after each kill: the file passes tx.Check, every acknowledged
// reading and alert is present.
func TestDB_crash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	path := filepath.Join(t.TempDir(), "edge.db")
	for run := 1; run <= 4; run++ {
		lastSeq, lastAlert := runAndKill(t, path, run, 15+run*7)
		checkFile(t, path)

		db, err := storage.Open(path, storage.Options{Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatalf("run %d: reopen after kill: %v", run, err)
		}
		base := run * 1_000_000_000
		present, maxSeq := 0, 0
		for s := range 10 {
			rs, err := db.Readings(fmt.Sprintf("s%d", s), t0.Add(time.Duration(run)*time.Hour), t0.Add(time.Duration(run+1)*time.Hour), 0, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				v := int(r.Value)
				if v <= lastSeq {
					present++
				}
				maxSeq = max(maxSeq, v)
			}
		}
		if want := lastSeq - base + 1; present != want {
			t.Errorf("run %d: %d of %d acknowledged readings present", run, present, want)
		}
		alerts, _, err := db.Alerts(storage.AlertQuery{Limit: 1000, Sensor: "s0"})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, a := range alerts {
			have[a.ID] = true
		}
		for n := 1; n <= lastAlert; n++ {
			if id := fmt.Sprintf("run%d-%06d", run, n); !have[id] {
				t.Errorf("run %d: acknowledged alert %s missing", run, id)
			}
		}
		depth, _, _ := db.OutboxStats()
		t.Logf("run %d: acked %d readings and %d alerts; %d readings past the last ack survived; outbox depth %d",
			run, lastSeq-base+1, lastAlert, maxSeq-lastSeq, depth)
		if depth < lastAlert {
			t.Errorf("run %d: outbox depth %d < acknowledged alerts %d", run, depth, lastAlert)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runAndKill starts the child, waits for acks acknowledgements plus a random
// moment, SIGKILLs it and returns the last acknowledged reading and alert.
func runAndKill(t *testing.T, path string, run, acks int) (lastSeq, lastAlert int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), crashEnv+"="+path, fmt.Sprintf("%s_RUN=%d", crashEnv, run),
		fmt.Sprintf("%s_T0=%d", crashEnv, t0.UnixNano()))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	n := 0
	killAt := time.Time{}
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := cmd.Wait()
				var ee *exec.ExitError
				if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL {
					return lastSeq, lastAlert
				}
				t.Fatalf("run %d: child ended: %v", run, err)
			}
			f := strings.Fields(line)
			if len(f) == 3 && f[0] == "ACK" {
				lastSeq, _ = strconv.Atoi(f[1])
				lastAlert, _ = strconv.Atoi(f[2])
				n++
			} else if strings.HasPrefix(line, "ERR") {
				t.Fatalf("run %d: child: %s", run, line)
			}
			if n == acks && killAt.IsZero() {
				killAt = time.Now()
				// kill mid-write, a few ms after an ack
				time.AfterFunc(time.Duration(run*7%20)*time.Millisecond, func() { _ = cmd.Process.Kill() })
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("run %d: child made %d acks in 60s", run, n)
		}
	}
}
