//go:build race

package storage_test

// raceEnabled shortens the heaviest load tests under the race detector,
// which makes them 5-10x slower.
const raceEnabled = true
