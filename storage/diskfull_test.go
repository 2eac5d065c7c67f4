package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

// mountTmpfs mounts a tmpfs of size at a new directory and unmounts it at
// cleanup. It skips the test only when not root and the mount fails.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("mount tmpfs (not root): %v: %s", err, out)
		}
		t.Fatalf("mount tmpfs as root: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func writeWait(db *storage.DB, rs []agent.Result, as []agent.Alert) error {
	c := agent.NewCommit(len(rs))
	for i := range rs {
		rs[i].Commit = c
	}
	db.Write(rs, as)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Wait(ctx)
}

// TestDB_diskFull fills a real 2 MiB tmpfs: commits fail with
// agent.ErrStorageFailed, Ready reports it, the failures are counted, an
// alert written meanwhile is held; after the filesystem grows the writer
// recovers on its own and the alert is stored.
func TestDB_diskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	path := filepath.Join(dir, "edge.db")
	reg := prometheus.NewRegistry()
	db := mustOpen(t, path, storage.Options{Registerer: reg, Outbox: true})

	var failed error
	n := 0
	for i := 0; i < 500 && failed == nil; i++ {
		rs := make([]agent.Result, 1000)
		for j := range rs {
			rs[j] = res(fmt.Sprintf("s%d", j%10), t0.Add(time.Duration(n)*time.Millisecond), float64(n))
			n++
		}
		failed = writeWait(db, rs, nil)
	}
	if failed == nil {
		t.Fatalf("500k readings fit in a 2 MiB tmpfs?")
	}
	if !errors.Is(failed, agent.ErrStorageFailed) {
		t.Fatalf("commit on a full disk: %v; want ErrStorageFailed", failed)
	}
	if err := db.Ready(); err == nil {
		t.Fatal("Ready() = nil on a full disk")
	}
	t.Logf("disk full after %d readings: %v", n, failed)

	// take the last free blocks too, so even a small commit fails
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	// an alert raised while the disk is full is held, not lost
	// (with a batch too big for the file's free pages: a small commit that
	// fits in pages the file already owns still succeeds on a full disk)
	held := alert("held-1", "s0", agent.AlertFiring, t0)
	big := make([]agent.Result, 20000)
	for j := range big {
		big[j] = res(fmt.Sprintf("s%d", j%10), t0.Add(time.Hour+time.Duration(j)*time.Millisecond), float64(j))
	}
	if err := writeWait(db, big, []agent.Alert{held}); !errors.Is(err, agent.ErrStorageFailed) {
		t.Fatalf("write on a full disk: %v; want ErrStorageFailed", err)
	}
	if got := counter(t, reg, "edgeagent_storage_commit_failures_total"); got < 2 {
		t.Errorf("commit_failures_total = %v; want >= 2", got)
	}
	if got := counter(t, reg, "edgeagent_storage_dropped_total", "reason", "commit_failed"); got < 21000 {
		t.Errorf("dropped_total{commit_failed} = %v; want >= 21000", got)
	}

	// space returns, and the filesystem grows: bbolt grows a small file
	// by doubling it, and the fold of the journal written meanwhile needs
	// new pages before it frees the journal's
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=8m", dir).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for db.Ready() != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // the writer retries held alerts every second
	}
	if err := db.Ready(); err != nil {
		t.Fatalf("not recovered 20s after space returned: %v", err)
	}
	if err := writeWait(db, []agent.Result{res("s0", t0.Add(2*time.Hour), 2)}, nil); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	got, _, err := db.Alerts(storage.AlertQuery{})
	if err != nil || len(got) != 1 || got[0].ID != "held-1" {
		t.Fatalf("Alerts after recovery = %+v, %v; want the held alert", got, err)
	}
	if d, _, _ := db.OutboxStats(); d != 1 {
		t.Errorf("outbox depth after recovery = %d; want 1", d)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path)
}
