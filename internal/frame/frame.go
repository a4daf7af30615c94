// Package frame is what the gateway's outbox journal and the hub's intake
// journal share: entries framed as length (4 bytes, LE) | CRC-32C of the
// payload (4) | payload, and the fields inside a payload (varints, fixed
// 8-byte words, length-prefixed bytes).
package frame

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

var table = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of p.
func Checksum(p []byte) uint32 { return crc32.Checksum(p, table) }

// Begin reserves an entry's frame at the end of b; append the payload, then
// call End with the returned start.
func Begin(b []byte) (out []byte, start int) {
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0), len(b)
}

// End fills in the frame of the entry begun at start.
func End(b []byte, start int) []byte {
	p := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(p)))
	binary.LittleEndian.PutUint32(b[start+4:], Checksum(p))
	return b
}

// ErrTorn is returned for an entry that is cut short, longer than allowed,
// or fails its checksum: a write that did not finish, or corruption.
var ErrTorn = errors.New("torn or corrupt entry")

// Next splits off b's first entry: its payload (aliasing b) and the rest.
// Payloads longer than max are refused as torn.
func Next(b []byte, max int) (payload, rest []byte, err error) {
	if len(b) < 8 {
		return nil, b, ErrTorn
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(max) || uint64(len(b)-8) < uint64(n) {
		return nil, b, ErrTorn
	}
	p := b[8 : 8+n]
	if Checksum(p) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, b, ErrTorn
	}
	return p, b[8+n:], nil
}

// AppendBytes appends p with its length (uvarint) before it.
func AppendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// AppendString is AppendBytes for a string.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ErrMalformed is a payload whose fields do not parse.
var ErrMalformed = errors.New("malformed entry")

// Reader reads a payload's fields; after the first failure every read
// returns zero and Err reports ErrMalformed.
type Reader struct {
	b   []byte
	bad bool
}

// NewReader reads p.
func NewReader(p []byte) *Reader { return &Reader{b: p} }

func (r *Reader) fail() { r.bad, r.b = true, nil }

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Uint64 reads 8 bytes, little-endian.
func (r *Reader) Uint64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// Bytes reads a length-prefixed byte string (a copy).
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	p := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return p
}

// Err is ErrMalformed after a failed read, or when bytes are left over.
func (r *Reader) Err() error {
	if r.bad || len(r.b) != 0 {
		return ErrMalformed
	}
	return nil
}
