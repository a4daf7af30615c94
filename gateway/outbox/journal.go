package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strings"

	"github.com/outpost-iot/outpost/internal/frame"
)

// The journal makes buffered records survive a crash of the process (kill
// -9, a panic, the OOM killer) without writing them to the SD card: see
// "Durability" in the package comment. It is two files beside the database
// (path + ".pending.0" and ".1"), used in turn:
//
//	header (72 bytes): "OPJ2" | generation (8, LE) | base seq (8, LE) | reserved mark (8, LE) | boot id length (1) | boot id (39, padded) | CRC-32C of the above (4)
//	entry:             payload length (4, LE) | CRC-32C of payload (4) | payload (encodeJournalRow)
//
// Append writes one entry per record to the current file, before its seq
// is returned or any reader sees it; the write lands in the page cache,
// which outlives the process. After every commit the other file is
// rewritten in place (truncated, the records still buffered written, the
// header last) with the next generation, as base the last seq handed out,
// and the reservation (meta.last_seq) as committed, and becomes the current
// one; a reservation committed on its own rewrites it too. So a file never holds much more than
// one flush interval of records, and a file truncated within the kernel's
// writeback delay (30 s) after it was written is never written to the disk
// at all. Rewriting in place (no new file, no rename) also spares the file
// system's metadata: ext4 writes a file renamed over another to disk at once.
//
// At Open the valid file with the highest generation is read. If it was
// written during the current boot (same boot id) and its reservation is the
// database's (no other process, e.g. a rolled-back firmware, opened the
// database since and handed out seqs the journal does not know), it is
// complete: every seq
// handed out is at most max(base, its last entry), and every record above
// the database's floor is in it, stored, or acknowledged (a torn last entry
// belongs to an Append that never returned: its seq was never seen). The
// outbox then recovers its records and continues right after the last seq
// handed out: nothing lost, no gap. A file of an earlier boot (a power cut
// or kernel crash lost what was only in the page cache) is used for what it
// holds, and the seqs above it up to the reservation are reported as
// possibly lost, as without a journal.
const (
	journalSuffix = ".pending."
	journalMagic  = "OPJ2"
	headerSize    = 72
	maxBootID     = 39
	bootIDFile    = "/proc/sys/kernel/random/boot_id"
	// maxJournalEntry bounds one entry's payload when reading (a record is
	// far smaller; a larger length is a torn or corrupt entry).
	maxJournalEntry = 1 << 20
)

// readBootID returns the kernel's boot id, or "" if it cannot be read
// (then no journal is ever trusted as complete).
func readBootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// journal is the pair of journal files. Its methods are called with
// Outbox.mu held.
type journal struct {
	path    string // the database's; the files are path + journalSuffix + "0" and "1"
	boot    string
	f       [2]*os.File
	cur     int    // the file appends go to
	gen     uint64 // its generation
	off     int64  // its end
	on      bool   // appends are journalled (a rewrite succeeded since the last failure)
	entries int    // entries written since the last rewrite
	buf     []byte
	err     error // why the journal is off; nil once a rewrite succeeds
}

func (j *journal) name(i int) string { return j.path + journalSuffix + string(rune('0'+i)) }

// open opens (creating) both files; cur is the file with the highest
// generation, gen (the next rewrite writes the other file, with gen+1).
func (j *journal) open(cur int, gen uint64) error {
	for i := range j.f {
		f, err := os.OpenFile(j.name(i), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			j.close(false)
			return j.fail(fmt.Errorf("outbox: journal: %w", err))
		}
		j.f[i] = f
	}
	j.cur, j.gen = cur, gen
	return nil
}

// rewrite makes the other file current: truncated, then rows (the records
// still buffered) written after the header's place, then the header with
// the next generation and base. Until the header is written the current
// file stays the valid one with the highest generation. On failure the
// journal is turned off (see fail).
func (j *journal) rewrite(base, reserved uint64, rows []row) error {
	if j.f[0] == nil && j.err == nil {
		return nil // closed
	}
	if !j.on {
		// After a failure: reopen both files by name (fail may have
		// removed one that its descriptor still points to).
		j.close(false)
		if err := j.open(j.cur, j.gen); err != nil {
			return err
		}
	}
	next := 1 - j.cur
	f := j.f[next]
	if err := f.Truncate(0); err != nil {
		return j.fail(fmt.Errorf("outbox: journal: %w", err))
	}
	j.buf = j.buf[:0]
	for i := range rows {
		j.buf = appendJournalEntry(j.buf, &rows[i])
	}
	if len(j.buf) > 0 {
		if _, err := f.WriteAt(j.buf, headerSize); err != nil {
			return j.fail(fmt.Errorf("outbox: journal: %w", err))
		}
	}
	end := headerSize + int64(len(j.buf))
	j.buf = appendJournalHeader(j.buf[:0], j.gen+1, base, reserved, j.boot)
	if _, err := f.WriteAt(j.buf, 0); err != nil {
		return j.fail(fmt.Errorf("outbox: journal: %w", err))
	}
	// The old file is no longer read (lower generation): empty it, so its
	// dirty pages are dropped rather than written back.
	_ = j.f[j.cur].Truncate(0)
	j.cur, j.gen, j.off, j.entries, j.on, j.err = next, j.gen+1, end, len(rows), true, nil
	return nil
}

// append writes r's entry to the current file. After a failed write the
// journal is off until the next rewrite.
func (j *journal) append(r *row) error {
	if !j.on {
		return j.err
	}
	j.buf = appendJournalEntry(j.buf[:0], r)
	if _, err := j.f[j.cur].WriteAt(j.buf, j.off); err != nil {
		return j.fail(fmt.Errorf("outbox: journal: %w", err))
	}
	j.off += int64(len(j.buf))
	j.entries++
	return nil
}

// fail records err, turns appends off and empties both files: an
// incomplete journal must not be taken for a complete one at the next Open
// (it would hand out again the seqs written after the failure). Without a
// journal, Open reports the seqs a crash may have lost, as it does after a
// power cut.
func (j *journal) fail(err error) error {
	for i, f := range j.f {
		if f == nil || f.Truncate(0) != nil {
			if rerr := os.Remove(j.name(i)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				_ = os.Truncate(j.name(i), 0)
			}
		}
	}
	j.on, j.err = false, err
	return err
}

// close closes the files; remove also deletes them (a clean Close
// committed everything).
func (j *journal) close(remove bool) {
	for i, f := range j.f {
		if f != nil {
			f.Close()
			j.f[i] = nil
		}
		if remove {
			_ = os.Remove(j.name(i))
		}
	}
	j.on = false
}

// journalState is what Open reads from a journal.
type journalState struct {
	found    bool
	idx      int // which file
	gen      uint64
	boot     string
	base     uint64
	reserved uint64
	rows     []row // in file order (ascending seqs)
	torn     bool  // the file ends in an incomplete or corrupt entry
}

// readJournal reads the valid journal file with the highest generation. A
// missing or empty file is not an error, nor is an invalid header (not a
// journal, or a rewrite that did not finish) or a torn entry (torn: the
// rows before it are returned).
func readJournal(j *journal) (journalState, error) {
	var best journalState
	for i := range 2 {
		b, err := os.ReadFile(j.name(i))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return journalState{}, fmt.Errorf("outbox: journal: %w", err)
		}
		if s := parseJournal(b); s.found && (!best.found || s.gen > best.gen) {
			best, best.idx = s, i
		}
	}
	return best, nil
}

func parseJournal(b []byte) journalState {
	var s journalState
	h, ok := parseJournalHeader(b)
	if !ok {
		return s
	}
	s.found, s.gen, s.boot, s.base, s.reserved = true, h.gen, h.boot, h.base, h.reserved
	for b = b[headerSize:]; len(b) > 0; {
		p, rest, err := frame.Next(b, maxJournalEntry)
		if err != nil {
			s.torn = true
			break
		}
		r, err := decodeJournalRow(p)
		if err != nil {
			s.torn = true
			break
		}
		s.rows, b = append(s.rows, r), rest
	}
	return s
}

func appendJournalHeader(b []byte, gen, base, reserved uint64, boot string) []byte {
	if len(boot) > maxBootID {
		boot = boot[:maxBootID]
	}
	start := len(b)
	b = append(b, journalMagic...)
	b = binary.LittleEndian.AppendUint64(b, gen)
	b = binary.LittleEndian.AppendUint64(b, base)
	b = binary.LittleEndian.AppendUint64(b, reserved)
	b = append(b, byte(len(boot)))
	b = append(b, boot...)
	b = append(b, make([]byte, maxBootID-len(boot))...)
	return binary.LittleEndian.AppendUint32(b, frame.Checksum(b[start:]))
}

type journalHeader struct {
	gen, base, reserved uint64
	boot                string
}

func parseJournalHeader(b []byte) (journalHeader, bool) {
	if len(b) < headerSize || string(b[:4]) != journalMagic ||
		frame.Checksum(b[:headerSize-4]) != binary.LittleEndian.Uint32(b[headerSize-4:]) {
		return journalHeader{}, false
	}
	bl := int(b[28])
	if bl > maxBootID {
		return journalHeader{}, false
	}
	return journalHeader{
		gen:      binary.LittleEndian.Uint64(b[4:]),
		base:     binary.LittleEndian.Uint64(b[12:]),
		reserved: binary.LittleEndian.Uint64(b[20:]),
		boot:     string(b[29 : 29+bl]),
	}, true
}

func appendJournalEntry(b []byte, r *row) []byte {
	b, start := frame.Begin(b)
	return frame.End(encodeJournalRow(b, r), start)
}

// encodeJournalRow appends r: seq, kind, t, added (varints), sensor, unit,
// body (length-prefixed), and the value if it has one (flag byte, then the
// float's 8 bytes).
func encodeJournalRow(b []byte, r *row) []byte {
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendVarint(b, r.kind)
	b = binary.AppendVarint(b, r.t)
	b = binary.AppendVarint(b, r.added)
	b = frame.AppendString(b, r.series.sensor)
	b = frame.AppendString(b, r.series.unit)
	b = frame.AppendBytes(b, r.body)
	if r.hasValue {
		b = append(b, 1)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.value))
	} else {
		b = append(b, 0)
	}
	return b
}

var errJournalEntry = errors.New("outbox: journal: malformed entry")

// decodeJournalRow decodes an entry's payload and checks that it is a
// record the outbox could have written (seq > 0, a known kind, a record
// that validates).
func decodeJournalRow(p []byte) (row, error) {
	rd := frame.NewReader(p)
	var r row
	r.seq = rd.Uvarint()
	r.kind = rd.Varint()
	r.t = rd.Varint()
	r.added = rd.Varint()
	sensor, unit := rd.Bytes(), rd.Bytes()
	if body := rd.Bytes(); len(body) > 0 {
		r.body = body
	}
	switch rd.Byte() {
	case 0:
	case 1:
		r.value, r.hasValue = math.Float64frombits(rd.Uint64()), true
	default:
		return row{}, errJournalEntry
	}
	if rd.Err() != nil || r.seq == 0 {
		return row{}, errJournalEntry
	}
	r.series = seriesKey{string(sensor), string(unit)}
	rec, err := r.record()
	if err != nil {
		return row{}, fmt.Errorf("%w: %v", errJournalEntry, err)
	}
	if err := rec.Validate(); err != nil {
		return row{}, fmt.Errorf("%w: %v", errJournalEntry, err)
	}
	return r, nil
}
