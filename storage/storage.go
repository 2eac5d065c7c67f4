// Package storage keeps readings, 1-minute rollups, alerts, the upstream
// outbox and detector state in one bbolt file.
//
// One writer goroutine owns every write. Write appends to the current batch
// and returns; the writer commits the batch in one transaction when it holds
// MaxBatch readings, when CommitInterval has passed since its first entry, or
// at once when the writer is free and someone waits for durability (a reading
// with a Commit, Flush, the outbox and state methods). Retention deletes ride
// in the same commits, at most 10000 keys per transaction. Queries run in
// short read transactions and copy their results out.
package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/edgeagent/edgeagent/agent"
)

var _ agent.Store = (*DB)(nil)

// DB is an open history file. Its methods are safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	path string
	opts Options
	log  *slog.Logger
	m    *metrics

	mu      sync.Mutex
	space   *sync.Cond // signalled when the writer takes a batch
	cur     *batch
	spare   spareBufs // a committed batch's emptied buffers, for reuse
	closing bool
	folding bool // the writer is folding the journal: Write may fill two batches' worth

	kick   chan struct{} // cap 1: the current batch changed
	notify chan struct{} // cap 1: a commit added outbox entries
	done   chan struct{} // closed when the writer has exited
	closed atomic.Bool

	readyErr atomic.Pointer[error]
	fileSize atomic.Int64

	obMu     sync.Mutex // outbox counters, written by the writer
	obDepth  int
	obBytes  int64
	obOldest time.Time

	w writerState // owned by the writer goroutine
}

// Open opens or creates the history file at path and starts its writer.
//
// A file locked by another process fails after Options.LockTimeout with an
// error containing "database is locked by another process". A file that is
// not a bbolt database, or a damaged one, fails with an error that says to
// start with --reset-db (see ResetFile). A file written by a newer schema
// version is refused; an older one is migrated.
func Open(path string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	bo := &bolt.Options{
		Timeout: opts.LockTimeout,
		// The array freelist hands out the lowest free pages first, so a
		// commit's pages lie together; the map's come from anywhere in
		// the file. Each page bbolt reads through its mapping brings up
		// to 15 cached neighbours with it (the kernel's fault-around), so
		// scattered pages cost RSS: at the end of a fold's delete of
		// 2,048 journal keys (the bound then; 1,024 since) the agent's
		// file pages (the binary's 13 MB included) were 28-38 MB with the
		// map, 21-24 MB with the array. The array's costs (a scan for a
		// multi-page run, a merge of the sorted list per commit) are
		// small at our file sizes: in
		// paired max-rate runs the agent used less CPU with it, not more
		// (docs/performance.md, round 10).
		FreelistType:   bolt.FreelistArrayType,
		NoFreelistSync: true,
		MaxSize:        int(opts.maxSize()),
	}
	bdb, err := openBolt(path, bo)
	if err != nil {
		return nil, err
	}
	db := &DB{
		bolt:   bdb,
		path:   path,
		opts:   opts,
		log:    opts.Logger.With("component", "storage"),
		m:      newMetrics(opts.Registerer),
		kick:   make(chan struct{}, 1),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	db.space = sync.NewCond(&db.mu)
	db.cur = newBatch()
	db.w.init()
	if err := db.migrate(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("storage %s: %w", path, err)
	}
	if err := db.loadOutboxStats(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("storage %s: %w", path, err)
	}
	if err := db.loadJournal(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("storage %s: %w", path, err)
	}
	db.updateFileSize()
	go db.run()
	return db, nil
}

// saveFreelist writes bbolt's list of free pages in one last, empty
// transaction, once the writer has stopped. The file runs with
// NoFreelistSync (no freelist write per commit), so an Open must otherwise
// walk every page to rebuild the list: 4.4 s cold for a 238 MB file here,
// with all of it mapped (docs/storage.md). The next Open reads the saved
// list, and its first commit drops it again, so after a crash the list is
// rebuilt as before.
func (db *DB) saveFreelist() {
	db.bolt.NoFreelistSync = false
	if err := db.bolt.Update(func(*bolt.Tx) error { return nil }); err != nil {
		db.log.Warn("storage: free page list not saved; the next start rebuilds it", "path", db.path, "err", err)
	}
}

// openBolt opens the file and turns bbolt's errors into ones a user can act on.
// bbolt may panic on some damaged files; that is reported as corruption too.
func openBolt(path string, bo *bolt.Options) (bdb *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			bdb, err = nil, fmt.Errorf("storage %s: damaged database (%v): start with --reset-db to move it aside", path, p)
		}
	}()
	bdb, err = bolt.Open(path, 0o600, bo)
	switch {
	case err == nil:
		return bdb, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("storage %s: database is locked by another process (waited %v): %w", path, bo.Timeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, fmt.Errorf("storage %s: not a valid edgeagent database (%w): start with --reset-db to move it aside", path, err)
	}
	return nil, fmt.Errorf("storage %s: open: %w (if the file is damaged, start with --reset-db to move it aside)", path, err)
}

// ResetFile moves the file at path aside to path.bad-<UTC time> and returns
// the new name; it never deletes anything. A missing file returns "", nil.
func ResetFile(path string) (moved string, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	moved = path + ".bad-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, moved); err != nil {
		return "", fmt.Errorf("storage: reset %s: %w", path, err)
	}
	return moved, nil
}

// migrate creates the buckets of an empty file, upgrades an older schema and
// refuses a newer one or a bbolt file that is not ours.
func (db *DB) migrate() error {
	return db.bolt.Update(func(tx *bolt.Tx) error {
		version := uint32(0)
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			foreign := false
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				foreign = true
				return nil
			})
			if foreign {
				return fmt.Errorf("bbolt file without an edgeagent meta bucket: start with --reset-db to move it aside")
			}
		} else if v := meta.Get(keySchema); len(v) == 4 {
			version = binary.BigEndian.Uint32(v)
		} else {
			return fmt.Errorf("meta bucket: schema version %x: %w: start with --reset-db to move it aside", v, errCorrupt)
		}
		if version > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this edgeagent supports (%d): upgrade edgeagent, or start with --reset-db to move the file aside", version, schemaVersion)
		}
		for ; version < schemaVersion; version++ {
			if err := migrations[version](tx); err != nil {
				return fmt.Errorf("migrate schema %d to %d: %w", version, version+1, err)
			}
			db.log.Info("storage schema migrated", "from", version, "to", version+1)
		}
		return setSchema(tx, schemaVersion)
	})
}

// migrations[v] upgrades a file from version v to v+1 inside one transaction.
var migrations = [schemaVersion]func(tx *bolt.Tx) error{
	0: func(tx *bolt.Tx) error { // empty file: create every bucket
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		return nil
	},
	1: func(tx *bolt.Tx) error { // the journal of recent commits
		if _, err := tx.CreateBucketIfNotExists(bucketJournal); err != nil {
			return fmt.Errorf("bucket %s: %w", bucketJournal, err)
		}
		return nil
	},
	// runs of readings (runs.go): single readings stay readable as they
	// are; the version only keeps an older edgeagent from misreading runs
	2: func(*bolt.Tx) error { return nil },
	// folds in parts (journal.go, foldMark): nothing to change; the version
	// keeps an older edgeagent from reading a fold's records twice
	3: func(*bolt.Tx) error { return nil },
	// fold marks with no sensor, of folds whose journal keys are being
	// deleted (deleteFolded): nothing to change; the version keeps an older
	// edgeagent from reading those records twice
	4: func(*bolt.Tx) error { return nil },
	// reading counts in the sensor buckets' sequences (readingCount): a
	// bucket without one is counted once, by the first retention pass or
	// write; the version keeps an older edgeagent, which does not update
	// them, from the file
	5: func(*bolt.Tx) error { return nil },
}

func setSchema(tx *bolt.Tx, v uint32) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, v))
}

// Ready returns nil when the last commit succeeded, else why it failed (a
// full disk, the size limit). It recovers on its own when a commit succeeds.
func (db *DB) Ready() error {
	if db.closed.Load() {
		return fmt.Errorf("storage %s: %w", db.path, agent.ErrClosed)
	}
	if p := db.readyErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Size returns the size of the file in bytes (it never shrinks; freed pages
// are reused).
func (db *DB) Size() int64 { return db.fileSize.Load() }

// Path returns the file's path.
func (db *DB) Path() string { return db.path }

func (db *DB) updateFileSize() {
	if fi, err := os.Stat(db.path); err == nil {
		db.fileSize.Store(fi.Size())
		db.m.fileBytes.Set(float64(fi.Size()))
	}
}

// Close commits what is pending, stops the writer and closes the file.
// Writes after Close fail their readings with agent.ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closing {
		db.mu.Unlock()
		<-db.done
		return nil
	}
	db.closing = true
	db.space.Broadcast()
	db.mu.Unlock()
	db.kickWriter()
	<-db.done
	db.closed.Store(true)
	db.saveFreelist()
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("storage %s: close: %w", db.path, err)
	}
	return nil
}
