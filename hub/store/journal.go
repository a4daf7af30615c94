package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/outpost-iot/outpost/internal/frame"
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
// entries framed as the gateway's outbox journal frames them (internal/frame),
// with the payload:
//
//	recv_ms (varint) | device (bytes) | rows (uvarint) | per row:
//	seq, t_ms (varints) | kind, sensor (bytes) |
//	value: byte 0 (null) or 1 and the float's 8 bytes | body (bytes)
//
// A torn or corrupt entry ends the journal: its batch was never
// acknowledged (its write did not return).
const (
	journalMagic  = "OHJ1"
	journalHeader = 16
	maxEntry      = 64 << 20
)

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
		frame.Checksum(b[:12]) != binary.LittleEndian.Uint32(b[12:16]) {
		if len(b) == 0 {
			return 0, nil, nil
		}
		return 0, nil, errors.New("no valid header")
	}
	gen = binary.LittleEndian.Uint64(b[4:12])
	for b = b[journalHeader:]; len(b) > 0; {
		p, rest, err := frame.Next(b, maxEntry)
		if err != nil {
			return gen, batches, err
		}
		bt, err := decodeEntry(p)
		if err != nil {
			return gen, batches, err
		}
		batches, b = append(batches, bt), rest
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
	binary.LittleEndian.PutUint32(h[12:], frame.Checksum(h[:12]))
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
		var start int
		j.buf, start = frame.Begin(j.buf)
		j.buf = frame.End(encodeEntry(j.buf, bt), start)
		if n := len(j.buf) - start - 8; n > maxEntry {
			return fmt.Errorf("journal entry of %d bytes", n)
		}
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
	b = binary.AppendVarint(b, bt.recv)
	b = frame.AppendString(b, bt.device)
	b = binary.AppendUvarint(b, uint64(len(bt.rows)))
	for i := range bt.rows {
		r := &bt.rows[i]
		b = binary.AppendVarint(b, r.seq)
		b = binary.AppendVarint(b, r.t)
		b = frame.AppendString(b, r.kind)
		b = frame.AppendString(b, r.sensor)
		if v, ok := r.value.(float64); ok {
			b = append(b, 1)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		} else {
			b = append(b, 0)
		}
		b = frame.AppendBytes(b, r.body)
	}
	return b
}

func decodeEntry(p []byte) (logBatch, error) {
	r := frame.NewReader(p)
	var bt logBatch
	bt.recv = r.Varint()
	bt.device = string(r.Bytes())
	n := r.Uvarint()
	if n == 0 || n > uint64(len(p)) { // each row takes several bytes
		return logBatch{}, errors.New("bad row count")
	}
	bt.rows = make([]logRow, 0, n)
	for range n {
		var row logRow
		row.seq = r.Varint()
		row.t = r.Varint()
		row.kind = string(r.Bytes())
		row.sensor = string(r.Bytes())
		switch r.Byte() {
		case 0:
		case 1:
			row.value = math.Float64frombits(r.Uint64())
		default:
			return logBatch{}, errors.New("bad value flag")
		}
		row.body = r.Bytes()
		bt.rows = append(bt.rows, row)
	}
	if err := r.Err(); err != nil {
		return logBatch{}, err
	}
	if bt.device == "" {
		return logBatch{}, errors.New("empty batch")
	}
	return bt, nil
}
