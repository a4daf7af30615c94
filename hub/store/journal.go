package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
)

// The intake journal is where a log batch is committed before its PUBACK:
// one write(2) per group, to a file beside the database (path + "-intake").
// It survives a kill -9 of the hub as SQLite's WAL does under
// synchronous=NORMAL: through the page cache, without an fsync. The writer
// moves the journal's batches into log in large transactions (flush), then
// empties the file in place and starts a new generation. Each flush records
// the generation it moved in store_meta, so a journal left behind by a crash
// between that commit and the emptying is not replayed twice.
//
// File: header = magic "OHJ1", generation (u64), CRC-32C of both; then
// entries = length (u32), CRC-32C of the payload (u32), payload:
//
//	recv_ms i64 | device: u16 len, bytes | rows u16 | per row:
//	seq i64 | t_ms i64 | kind: u8 len, bytes | sensor: u8 len, bytes |
//	value: u8 (0 null, 1 float) [f64] | body: u32 len, bytes
//
// A torn or corrupt entry ends the journal: its batch was never
// acknowledged (its write did not return).
const (
	journalMagic  = "OHJ1"
	journalHeader = 16
	maxEntry      = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// logBatch is one device's batch on its way from the intake journal into log.
type logBatch struct {
	device string
	recv   int64
	rows   []logRow
}

type logRow struct {
	seq          int64
	t            int64
	kind, sensor string
	value        any // nil or float64
	body         []byte
}

type journal struct {
	f   *os.File
	gen uint64
	end int64 // where the next entry goes
	buf []byte
}

// openJournal opens (creating) the journal at path and returns it with its
// generation and the batches it holds.
func openJournal(path string) (*journal, []logBatch, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	gen, batches, _ := parseJournal(b)
	return &journal{f: f, gen: gen}, batches, nil
}

// parseJournal returns the generation and batches of a journal file, and
// why it stopped early (nil when it read to the end). A file without a
// valid header holds nothing (generation 0).
func parseJournal(b []byte) (gen uint64, batches []logBatch, stop error) {
	if len(b) < journalHeader || string(b[:4]) != journalMagic ||
		crc32.Checksum(b[:12], castagnoli) != binary.LittleEndian.Uint32(b[12:16]) {
		if len(b) == 0 {
			return 0, nil, nil
		}
		return 0, nil, errors.New("no valid header")
	}
	gen = binary.LittleEndian.Uint64(b[4:12])
	for off := journalHeader; off < len(b); {
		if len(b)-off < 8 {
			return gen, batches, fmt.Errorf("torn entry header at %d", off)
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		sum := binary.LittleEndian.Uint32(b[off+4:])
		if n > maxEntry || len(b)-off-8 < n {
			return gen, batches, fmt.Errorf("torn entry at %d", off)
		}
		p := b[off+8 : off+8+n]
		if crc32.Checksum(p, castagnoli) != sum {
			return gen, batches, fmt.Errorf("bad checksum at %d", off)
		}
		bt, err := decodeEntry(p)
		if err != nil {
			return gen, batches, fmt.Errorf("entry at %d: %w", off, err)
		}
		batches = append(batches, bt)
		off += 8 + n
	}
	return gen, batches, nil
}

// reset empties the file in place (no rename: see docs/decisions.md on the
// gateway's journal) and starts generation gen.
func (j *journal) reset(gen uint64) error {
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	var h [journalHeader]byte
	copy(h[:], journalMagic)
	binary.LittleEndian.PutUint64(h[4:], gen)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], castagnoli))
	if _, err := j.f.WriteAt(h[:], 0); err != nil {
		return err
	}
	j.gen, j.end = gen, journalHeader
	return nil
}

// append writes the batches with one write(2).
func (j *journal) append(batches []*logBatch) error {
	j.buf = j.buf[:0]
	for _, bt := range batches {
		start := len(j.buf)
		j.buf = append(j.buf, make([]byte, 8)...)
		j.buf = encodeEntry(j.buf, bt)
		p := j.buf[start+8:]
		if len(p) > maxEntry {
			return fmt.Errorf("journal entry of %d bytes", len(p))
		}
		binary.LittleEndian.PutUint32(j.buf[start:], uint32(len(p)))
		binary.LittleEndian.PutUint32(j.buf[start+4:], crc32.Checksum(p, castagnoli))
	}
	n, err := j.f.WriteAt(j.buf, j.end)
	j.end += int64(n)
	if err == nil && n < len(j.buf) {
		err = io.ErrShortWrite
	}
	if cap(j.buf) > 1<<20 {
		j.buf = nil // one large group: do not keep its buffer
	}
	return err
}

func (j *journal) close() error { return j.f.Close() }

func encodeEntry(b []byte, bt *logBatch) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(bt.recv))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(bt.device)))
	b = append(b, bt.device...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(bt.rows)))
	for i := range bt.rows {
		r := &bt.rows[i]
		b = binary.LittleEndian.AppendUint64(b, uint64(r.seq))
		b = binary.LittleEndian.AppendUint64(b, uint64(r.t))
		b = append(b, byte(len(r.kind)))
		b = append(b, r.kind...)
		b = append(b, byte(len(r.sensor)))
		b = append(b, r.sensor...)
		if v, ok := r.value.(float64); ok {
			b = append(b, 1)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		} else {
			b = append(b, 0)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r.body)))
		b = append(b, r.body...)
	}
	return b
}

// entryReader reads an entry's fields; the first short read sets err.
type entryReader struct {
	b   []byte
	err error
}

func (r *entryReader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errors.New("entry too short")
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *entryReader) u8() int { p := r.take(1); return int(at(p, 0)) }

func at(p []byte, i int) byte {
	if len(p) <= i {
		return 0
	}
	return p[i]
}

func (r *entryReader) u16() int {
	if p := r.take(2); p != nil {
		return int(binary.LittleEndian.Uint16(p))
	}
	return 0
}

func (r *entryReader) u32() int {
	if p := r.take(4); p != nil {
		return int(binary.LittleEndian.Uint32(p))
	}
	return 0
}

func (r *entryReader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

func decodeEntry(p []byte) (logBatch, error) {
	r := entryReader{b: p}
	var bt logBatch
	bt.recv = int64(r.u64())
	bt.device = string(r.take(r.u16()))
	n := r.u16()
	if r.err == nil {
		bt.rows = make([]logRow, 0, min(n, len(p)/20))
	}
	for i := 0; i < n && r.err == nil; i++ {
		var row logRow
		row.seq = int64(r.u64())
		row.t = int64(r.u64())
		row.kind = string(r.take(r.u8()))
		row.sensor = string(r.take(r.u8()))
		switch r.u8() {
		case 0:
		case 1:
			row.value = math.Float64frombits(r.u64())
		default:
			if r.err == nil {
				r.err = errors.New("bad value flag")
			}
		}
		row.body = append([]byte(nil), r.take(r.u32())...)
		bt.rows = append(bt.rows, row)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return logBatch{}, r.err
	}
	if bt.device == "" || len(bt.rows) == 0 {
		return logBatch{}, errors.New("empty batch")
	}
	return bt, nil
}
