package storage_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edgeagent/edgeagent/agent"
	"github.com/edgeagent/edgeagent/storage"
)

// mappedKiB is this process's resident KiB of the mapping of path
// (/proc/self/smaps).
func mappedKiB(t testing.TB, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kib, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) == 6 && fields[5] == path
			continue
		}
		var n int
		if in && strings.HasPrefix(line, "Rss:") {
			fmt.Sscanf(strings.TrimPrefix(line, "Rss:"), "%d", &n)
			kib += n
		}
	}
	return kib
}

// The writer drops its mapping of the pages it read, so a large file does
// not stay resident in the agent (RSS) after folds and queries.
func TestDB_releasesMappedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.db")
	db := mustOpen(t, path, storage.Options{})
	const sensors, per = 200, 500
	rs := make([]agent.Result, 0, sensors)
	for i := range per {
		rs = rs[:0]
		for s := range sensors {
			rs = append(rs, res(fmt.Sprintf("s%03d", s), t0.Add(time.Duration(i)*time.Second), float64(i)))
		}
		db.Write(rs, nil)
	}
	flush(t, db) // the fold reads every sensor's pages, then drops them
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fileKiB := int(st.Size() / 1024)
	if fileKiB < 4096 {
		t.Fatalf("file %d KiB: too small to tell", fileKiB)
	}
	// The writer may read pages again at any time (a retention step every
	// second) and drops them at its next turn: resident must come down to a
	// small part of the file, not stay there at every instant.
	drops := func(what string, most int) int {
		t.Helper()
		min := 1 << 30
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if min = mappedKiB(t, path); min <= most {
				return min
			}
		}
		t.Fatalf("%s: %d KiB of a %d KiB file still resident after 3 s; want at most %d KiB", what, min, fileKiB, most)
		return 0
	}
	after := drops("after the fold", fileKiB/4)
	// Queries fault pages back in; the writer drops them again, every
	// 100 ms, so the most resident is taken while reading, not after.
	read := 0
	for s := range sensors {
		if _, err := db.Readings(fmt.Sprintf("s%03d", s), t0, t0.Add(time.Hour), 0, false); err != nil {
			t.Fatal(err)
		}
		read = max(read, mappedKiB(t, path))
	}
	if read < 1024 {
		t.Fatalf("reading every sensor left only %d KiB resident: the test reads too little to show the drop", read)
	}
	db.Write([]agent.Result{res("s000", t0.Add(time.Hour), 1)}, nil)
	flush(t, db)
	again := drops("after the queries and the next fold", read/4)
	t.Logf("file %d KiB; resident after the fold %d KiB, after reading every sensor %d KiB, after the next fold %d KiB", fileKiB, after, read, again)
}

// BenchmarkOpen opens a file of 1000 sensors (file-MB) as a clean Close
// leaves it ("saved": bbolt's free page list in the file) and as a crash
// leaves it ("rebuilt": no list, so Open walks every page to rebuild it).
// mapped-MB is the file mapped when Open returns. The page cache is warm
// here; docs/storage.md has the cold figures of a full 238 MB file.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "edge.db")
	db, err := storage.Open(path, storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	const sensors, per = 1000, 3000
	rs := make([]agent.Result, 0, 100*sensors)
	for i := 0; i < per; i += 100 {
		rs = rs[:0]
		for j := i; j < i+100; j++ {
			for s := range sensors {
				rs = append(rs, res(fmt.Sprintf("sensor-%04d", s), t0.Add(time.Duration(j)*time.Second), float64(j)))
			}
		}
		db.Write(rs, nil)
	}
	if err := db.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	db.Close()
	for _, crashed := range []bool{false, true} {
		b.Run(map[bool]string{false: "saved", true: "rebuilt"}[crashed], func(b *testing.B) {
			mapped := 0
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				if crashed {
					dropFreelist(b, path)
				}
				b.StartTimer()
				db, err := storage.Open(path, storage.Options{})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				mapped += mappedKiB(b, path)
				db.Close()
			}
			b.ReportMetric(float64(mapped)/1024/float64(b.N), "mapped-MB")
			if st, err := os.Stat(path); err == nil {
				b.ReportMetric(float64(st.Size())/1e6, "file-MB")
			}
		})
	}
}

// dropFreelist leaves the file at path as a crash would: one commit with
// NoFreelistSync drops the free page list a Close saved.
func dropFreelist(b *testing.B, path string) {
	b.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	if err := bdb.Update(func(*bolt.Tx) error { return nil }); err != nil {
		b.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		b.Fatal(err)
	}
}
