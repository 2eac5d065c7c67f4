//go:build !linux

package storage

// releaseMapped is a no-op off Linux (the agent targets Linux gateways).
func (db *DB) releaseMapped(force bool) {}
