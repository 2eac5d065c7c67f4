//go:build !linux

package storage

// releaseMapped is a no-op off Linux (the agent targets Linux gateways).
func (db *DB) releaseMapped(force bool) {}

// dropMapped is a no-op off Linux.
func (db *DB) dropMapped(size int64) {}

// offHeap is a plain allocation off Linux.
func offHeap(n int) (b []byte, free func()) { return make([]byte, n), func() {} }
