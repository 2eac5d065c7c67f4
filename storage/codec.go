package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/edgeagent/edgeagent/agent"
)

// Bucket names. The layout (schema version 4):
//
//	meta        "schema" -> uint32 BE version
//	            "fold" -> shard, 8B BE sequence, sensor: a fold cut into parts (journal.go)
//	readings    <sensor> -> bucket: tsKey(time)+seq(2B BE) -> run of readings (runs.go)
//	rollups     <sensor> -> bucket: tsKey(minute start) -> rollup value
//	sensors     <sensor> -> kind "\x00" unit (latest seen)
//	alerts      tsKey(StartedAt)+ID -> JSON agent.Alert (latest transition)
//	alert_ids   ID -> key in alerts
//	outbox      NextSequence (8B BE) -> outbox value
//	state       <sensor> -> detector/filter snapshot
//	journal     sequence (8B BE) -> chunk of reading records (schema 2, journal.go)
var (
	bucketMeta     = []byte("meta")
	bucketReadings = []byte("readings")
	bucketRollups  = []byte("rollups")
	bucketSensors  = []byte("sensors")
	bucketAlerts   = []byte("alerts")
	bucketAlertIDs = []byte("alert_ids")
	bucketOutbox   = []byte("outbox")
	bucketState    = []byte("state")
	bucketJournal  = []byte("journal")

	keySchema = []byte("schema")

	allBuckets = [][]byte{bucketMeta, bucketReadings, bucketRollups, bucketSensors,
		bucketAlerts, bucketAlertIDs, bucketOutbox, bucketState, bucketJournal}
)

// schemaVersion is the layout this code writes.
const schemaVersion = 6

// fillPercent is set on every bucket written: keys are mostly appended, so
// splitting pages 90% full nearly halves the file (LIBRARIES.md 3.3).
const fillPercent = 0.9

const readingKeyLen = 10

var errCorrupt = errors.New("corrupt value")

// tsKey is the 8-byte big-endian unix-nano time; it sorts by time for every
// time after 1970 (earlier times are clamped to 0).
func tsKey(dst []byte, t time.Time) []byte {
	n := t.UnixNano()
	if n < 0 || t.IsZero() {
		n = 0
	}
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

func keyTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
}

func readingKey(dst []byte, ts uint64, seq uint16) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ts)
	return binary.BigEndian.AppendUint16(dst, seq)
}

func tsNano(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 || t.IsZero() {
		return 0
	}
	return uint64(n)
}

// Reading value, version 1:
//
//	[0]    mask: 1 raw, 2 score+detector, 4 band, 8 arrived
//	[1:3]  flags uint16 BE
//	[3:11] value float64
//	raw float64 | score float64, detector len byte + bytes | lo, hi float64 |
//	arrived-minus-time microseconds, zig-zag varint
const (
	maskRaw     = 1
	maskScore   = 2
	maskBand    = 4
	maskArrived = 8
)

func appendF64(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f))
}

func readF64(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) }

func encodeReading(dst []byte, r *agent.Result) []byte {
	var mask byte
	if r.Raw != r.Value && !(math.IsNaN(r.Raw) && math.IsNaN(r.Value)) {
		mask |= maskRaw
	}
	if r.Score != 0 || r.Detector != "" {
		mask |= maskScore
	}
	if r.Band != (agent.Band{}) {
		mask |= maskBand
	}
	var arrived int64
	if !r.Arrived.IsZero() {
		arrived = r.Arrived.Sub(r.Time).Microseconds()
		if arrived != 0 {
			mask |= maskArrived
		}
	}
	dst = append(dst, mask)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Flags))
	dst = appendF64(dst, r.Value)
	if mask&maskRaw != 0 {
		dst = appendF64(dst, r.Raw)
	}
	if mask&maskScore != 0 {
		dst = appendF64(dst, r.Score)
		d := r.Detector
		if len(d) > 255 {
			d = d[:255]
		}
		dst = append(dst, byte(len(d)))
		dst = append(dst, d...)
	}
	if mask&maskBand != 0 {
		dst = appendF64(dst, r.Band.Lo)
		dst = appendF64(dst, r.Band.Hi)
	}
	if mask&maskArrived != 0 {
		dst = binary.AppendVarint(dst, arrived)
	}
	return dst
}

// decodeReading fills res from the reading at time ts with value v,
// copying everything out of v (valid only inside the tx).
func decodeReading(sensor string, ts uint64, v []byte, res *agent.Result) error {
	if len(v) < 11 {
		return fmt.Errorf("sensor %q: reading at %d: %w", sensor, ts, errCorrupt)
	}
	mask := v[0]
	*res = agent.Result{}
	res.Sensor = sensor
	res.Time = time.Unix(0, int64(ts))
	res.Flags = agent.Flags(binary.BigEndian.Uint16(v[1:3]))
	res.Value = readF64(v[3:11])
	res.Raw = res.Value
	res.Arrived = res.Time
	p := v[11:]
	need := func(n int) bool { return len(p) >= n }
	if mask&maskRaw != 0 {
		if !need(8) {
			return fmt.Errorf("sensor %q: reading at %d: %w", sensor, ts, errCorrupt)
		}
		res.Raw, p = readF64(p), p[8:]
	}
	if mask&maskScore != 0 {
		if !need(9) || len(p) < 9+int(p[8]) {
			return fmt.Errorf("sensor %q: reading at %d: %w", sensor, ts, errCorrupt)
		}
		res.Score = readF64(p)
		n := int(p[8])
		res.Detector = string(p[9 : 9+n])
		p = p[9+n:]
	}
	if mask&maskBand != 0 {
		if !need(16) {
			return fmt.Errorf("sensor %q: reading at %d: %w", sensor, ts, errCorrupt)
		}
		res.Band = agent.Band{Lo: readF64(p), Hi: readF64(p[8:])}
		p = p[16:]
	}
	if mask&maskArrived != 0 {
		d, n := binary.Varint(p)
		if n <= 0 {
			return fmt.Errorf("sensor %q: reading at %d: %w", sensor, ts, errCorrupt)
		}
		res.Arrived = res.Time.Add(time.Duration(d) * time.Microsecond)
	}
	return nil
}

// Rollup is the summary of one sensor over one minute, including readings a
// deadband filter suppressed.
type Rollup struct {
	Start time.Time // the minute, truncated
	Count int
	Min   float64
	Max   float64
	Mean  float64
	Last  float64 // the value with the latest reading time
}

// rollupAgg is the stored form: the sum, not the mean, so minutes merge.
type rollupAgg struct {
	count    uint32
	min, max float64
	sum      float64
	last     float64
	lastTs   uint64
}

const rollupValueLen = 4 + 5*8

func (a *rollupAgg) add(v float64, ts uint64) {
	if a.count == 0 {
		a.min, a.max = v, v
	} else {
		a.min = math.Min(a.min, v)
		a.max = math.Max(a.max, v)
	}
	a.count++
	a.sum += v
	if ts >= a.lastTs {
		a.last, a.lastTs = v, ts
	}
}

func (a *rollupAgg) merge(o rollupAgg) {
	if o.count == 0 {
		return
	}
	if a.count == 0 {
		*a = o
		return
	}
	a.min = math.Min(a.min, o.min)
	a.max = math.Max(a.max, o.max)
	a.count += o.count
	a.sum += o.sum
	if o.lastTs >= a.lastTs {
		a.last, a.lastTs = o.last, o.lastTs
	}
}

func (a *rollupAgg) encode(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, a.count)
	dst = appendF64(dst, a.min)
	dst = appendF64(dst, a.max)
	dst = appendF64(dst, a.sum)
	dst = appendF64(dst, a.last)
	return binary.BigEndian.AppendUint64(dst, a.lastTs)
}

func decodeRollup(v []byte) (rollupAgg, error) {
	if len(v) != rollupValueLen {
		return rollupAgg{}, errCorrupt
	}
	return rollupAgg{
		count:  binary.BigEndian.Uint32(v),
		min:    readF64(v[4:]),
		max:    readF64(v[12:]),
		sum:    readF64(v[20:]),
		last:   readF64(v[28:]),
		lastTs: binary.BigEndian.Uint64(v[36:]),
	}, nil
}

// Outbox value: [0] lane, [1:9] created unix-nano, [9] sensor length,
// sensor, payload.
const (
	laneAlert  = "alert"
	laneRollup = "rollup"
)

func laneByte(lane string) (byte, error) {
	switch lane {
	case laneAlert:
		return 'a', nil
	case laneRollup:
		return 'r', nil
	}
	return 0, fmt.Errorf("outbox lane %q: must be %q or %q", lane, laneAlert, laneRollup)
}

func laneName(b byte) string {
	if b == 'a' {
		return laneAlert
	}
	return laneRollup
}

func encodeOutbox(lane byte, created time.Time, sensor string, payload []byte) []byte {
	if len(sensor) > 255 {
		sensor = sensor[:255]
	}
	v := make([]byte, 0, 10+len(sensor)+len(payload))
	v = append(v, lane)
	v = tsKey(v, created)
	v = append(v, byte(len(sensor)))
	v = append(v, sensor...)
	return append(v, payload...)
}

func decodeOutbox(k, v []byte) (OutboxEntry, error) {
	if len(k) != 8 || len(v) < 10 || len(v) < 10+int(v[9]) {
		return OutboxEntry{}, fmt.Errorf("outbox key %x: %w", k, errCorrupt)
	}
	n := int(v[9])
	return OutboxEntry{
		Seq:     binary.BigEndian.Uint64(k),
		Lane:    laneName(v[0]),
		Created: keyTime(v[1:9]),
		Sensor:  string(v[10 : 10+n]),
		Payload: append([]byte(nil), v[10+n:]...),
	}, nil
}

func outboxCreated(v []byte) time.Time {
	if len(v) < 9 {
		return time.Time{}
	}
	return keyTime(v[1:9])
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
