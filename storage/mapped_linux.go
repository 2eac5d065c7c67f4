package storage

import (
	"syscall"
	"time"
)

// releaseEvery is how often the writer drops the pages of the file mapping.
const releaseEvery = 100 * time.Millisecond

// releaseMapped drops this process's mapping of the database pages it has
// read (madvise MADV_DONTNEED on bbolt's read-only shared mapping), at most
// once per releaseEvery unless force. The pages stay in the kernel's page
// cache, so the next read maps them back without disk I/O, but they stop
// counting in the agent's RSS: bbolt reads through the mapping, and without
// this nearly the whole file stays resident (measured 94 of 101 MB after
// 10 s at 100k readings/s), which is what RSS limits and OOM scores see.
//
// Only the writer goroutine calls it, between transactions: bbolt remaps
// the file only inside a write transaction, so the mapping cannot move
// under the call. Readers in View transactions fault pages back in.
func (db *DB) releaseMapped(force bool) {
	w := &db.w
	now := time.Now()
	if !force && now.Sub(w.released) < releaseEvery {
		return
	}
	w.released = now
	db.dropMapped(db.highWater())
}

// dropMapped drops the mapping of the file's first size bytes (a
// transaction's Size: the pages in use end there, the mapping is at least
// that long). Inside a transaction too: the pages it reads are not
// rewritten before it ends, so they fault back in from the page cache as
// they were, and bbolt remaps only in a commit.
func (db *DB) dropMapped(size int64) {
	if size <= 0 {
		return
	}
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, db.bolt.Info().Data, uintptr(size), syscall.MADV_DONTNEED)
	if errno != 0 {
		db.log.Debug("storage: madvise on the file mapping failed", "err", errno)
	}
}

// offHeap returns n zeroed bytes outside the Go heap (an anonymous
// mapping, populated at once) and the function that unmaps them; nothing
// may use the bytes after it. Go's collector lets the heap grow to twice
// what is live, so a big transient buffer in the heap costs twice its size
// in RSS; out here it costs its size. It must hold no Go pointers.
func offHeap(n int) (b []byte, free func()) {
	if n == 0 {
		return nil, func() {}
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_POPULATE)
	if err != nil {
		return make([]byte, n), func() {}
	}
	return b, func() { _ = syscall.Munmap(b) }
}
