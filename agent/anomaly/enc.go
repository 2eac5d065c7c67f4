package anomaly

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Snapshot state is little-endian binary: float64 and int64 as 8 bytes,
// bools and small counts as 1 byte, strings and slices length-prefixed
// (uvarint). Each detector writes its fields in a fixed order.

func putF(b []byte, x float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
}
func putI(b []byte, x int64) []byte { return binary.LittleEndian.AppendUint64(b, uint64(x)) }
func putBool(b []byte, x bool) []byte {
	if x {
		return append(b, 1)
	}
	return append(b, 0)
}
func putU(b []byte, x uint64) []byte { return binary.AppendUvarint(b, x) }
func putS(b []byte, s string) []byte { return append(putU(b, uint64(len(s))), s...) }

// dec reads what the put functions wrote; the first short read sets err
// and every later read returns zero.
type dec struct {
	b   []byte
	err error
}

func (d *dec) need(n int) bool {
	if d.err != nil {
		return false
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", ErrBadState)
		return false
	}
	return true
}

func (d *dec) f() float64 {
	if !d.need(8) {
		return 0
	}
	x := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return x
}

func (d *dec) i() int64 {
	if !d.need(8) {
		return 0
	}
	x := int64(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return x
}

func (d *dec) bool() bool {
	if !d.need(1) {
		return false
	}
	x := d.b[0] == 1
	d.b = d.b[1:]
	return x
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad length", ErrBadState)
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *dec) s() string {
	n := d.u()
	if !d.need(int(min(n, math.MaxInt32))) {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
