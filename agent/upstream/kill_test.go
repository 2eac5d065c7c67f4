package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/edgeagent/edgeagent/broker/mosquittotest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/edgeagent/edgeagent/storage"
)

const childEnv = "EDGEAGENT_UPLINK_CHILD" // "dbpath|brokerURL|window"

// TestUplink_childProcess is the publisher process of TestUplink_killedMidDrain;
// it does nothing unless started by it.
func TestUplink_childProcess(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process")
	}
	var args []string
	if err := json.Unmarshal([]byte(spec), &args); err != nil {
		t.Fatal(err)
	}
	window, _ := strconv.Atoi(args[2])
	db, err := storage.Open(args[0], storage.Options{Outbox: true, Gateway: "gw1", LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	u, err := New(storeOutbox{db}, Options{URL: args[1], Gateway: "gw1", Window: window,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	u.Start(ctx)
	for tick := time.NewTicker(50 * time.Millisecond); ctx.Err() == nil; {
		select {
		case <-tick.C:
			u.refreshStats()
			b, _ := json.Marshal(u.State())
			os.WriteFile(args[0]+".state.tmp", b, 0o600)
			os.Rename(args[0]+".state.tmp", args[0]+".state")
		case <-ctx.Done():
		}
	}
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(u.State())
	os.Stdout.Write(append(append([]byte("STATE "), st...), '\n'))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func startChild(t *testing.T, dbPath, url string, window int, out *bytes.Buffer) *exec.Cmd {
	t.Helper()
	spec, _ := json.Marshal([]string{dbPath, url, strconv.Itoa(window)})
	cmd := exec.Command(os.Args[0], "-test.run=^TestUplink_childProcess$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestUplink_killedMidDrain: the publisher process is SIGKILLed while it
// drains a backlog from a real bbolt file and started again: every alert
// arrives, in per-sensor order, and the outbox ends empty.
func TestUplink_killedMidDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const n = 4000
	m := mosquittotest.Start(t, mosquittotest.Options{})
	sub := subscribe(t, m.URL(), "edgeagent/gw1/alerts/#")
	dbPath := filepath.Join(t.TempDir(), "edge.db")
	as, want := alertBurst("k", n, 8)
	func() {
		ob := openStore(t, dbPath)
		ob.write(t, as)
		if err := ob.Close(); err != nil {
			t.Fatal(err)
		}
	}()

	var out1 bytes.Buffer
	c1 := startChild(t, dbPath, m.URL(), 1, &out1) // window 1: slow enough to be caught mid-drain
	waitFor(t, 30*time.Second, "first deliveries", func() bool { return sub.distinct() >= 300 })
	if err := c1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c1.Wait()
	// Mosquitto acknowledges a publish before the subscriber reads it: let
	// the deliveries in flight arrive before counting what never will
	got := sub.distinct()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		now := sub.distinct()
		if now == got {
			break
		}
		got = now
	}
	left := func() int {
		ob := openStore(t, dbPath)
		defer ob.Close()
		return depth(ob)
	}()
	t.Logf("killed after %d distinct ids; %d entries left in the outbox", got, left)
	if left == 0 || got >= n {
		t.Fatalf("the kill did not land mid-drain (left %d, received %d)", left, got)
	}
	if left < n-got {
		t.Errorf("outbox holds %d entries but %d alerts were never received: deleted without PUBACK", left, n-got)
	}

	var out2 bytes.Buffer
	c2 := startChild(t, dbPath, m.URL(), 64, &out2)
	sub.waitDistinct(n, 60*time.Second)
	stateFile := dbPath + ".state"
	waitFor(t, 30*time.Second, "second run reports an empty outbox", func() bool {
		b, err := os.ReadFile(stateFile)
		var st State
		return err == nil && json.Unmarshal(b, &st) == nil && st.OutboxDepth == 0 && st.Published > 0
	})
	c2.Process.Signal(syscall.SIGTERM)
	if err := c2.Wait(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out2.String())
	}
	var st State
	if i := bytes.Index(out2.Bytes(), []byte("STATE ")); i < 0 {
		t.Fatalf("no state from the second run:\n%s", out2.String())
	} else if err := json.NewDecoder(bytes.NewReader(out2.Bytes()[i+6:])).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Published != uint64(left) {
		t.Errorf("second run published %d, want exactly the %d entries the killed run left", st.Published, left)
	}
	sub.checkOrder(want)
	waitFor(t, 10*time.Second, "subscriber got every publish", func() bool { return sub.received() >= got+left })
	ob := openStore(t, dbPath)
	if d := depth(ob); d != 0 {
		t.Errorf("outbox depth after the second run = %d, want 0", d)
	}
}
