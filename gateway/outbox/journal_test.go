package outbox

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// journalRows builds rows of every shape the outbox journals: a reading, an
// alert (JSON body), a fault without a value, a mono-clock reading.
func journalRows(t testing.TB) []row {
	t.Helper()
	recs := []protocol.Record{
		reading("tank.temp", 21.5, t0),
		alert("tank.temp", "cold", protocol.AlertRaised, t0+1),
		{Kind: protocol.KindFault, Time: t0 + 2, Sensor: "ph", Fault: &protocol.Fault{Cause: "timeout"}},
		{Kind: protocol.KindReading, Time: 0, Sensor: "ph", Unit: "pH", Value: ptrF(7.01), Clock: protocol.ClockMono, Boot: "b1", MonoMS: 1234},
	}
	rows := make([]row, len(recs))
	for i := range recs {
		r, err := encode(&recs[i])
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		r.seq, r.added = uint64(10+i), t0+int64(i)
		rows[i] = r
	}
	return rows
}

func ptrF(v float64) *float64 { return &v }

func journalBytes(gen, base uint64, boot string, rows []row) []byte {
	b := appendJournalHeader(nil, gen, base, base+1024, boot)
	for i := range rows {
		b = appendJournalEntry(b, &rows[i])
	}
	return b
}

// Every shape of row survives the journal unchanged; a cut anywhere inside
// an entry yields the entries before it and "torn"; a cut inside the
// header, a bad header CRC or a wrong magic is no journal at all.
func TestJournalRoundTripAndTornTail(t *testing.T) {
	rows := journalRows(t)
	b := journalBytes(7, 9, "boot-a", rows)
	s := parseJournal(b)
	if !s.found || s.gen != 7 || s.base != 9 || s.reserved != 9+1024 || s.boot != "boot-a" || s.torn {
		t.Fatalf("header: %+v", s)
	}
	if !reflect.DeepEqual(s.rows, rows) {
		t.Fatalf("rows differ:\n got %+v\nwant %+v", s.rows, rows)
	}
	ends := []int{headerSize} // entry boundaries
	for i := range rows {
		ends = append(ends, len(appendJournalEntry(nil, &rows[i]))+ends[len(ends)-1])
	}
	for cut := 0; cut < len(b); cut++ {
		s := parseJournal(b[:cut])
		if cut < headerSize {
			if s.found {
				t.Fatalf("cut at %d (inside the header): found", cut)
			}
			continue
		}
		whole := 0
		for whole < len(rows) && ends[whole+1] <= cut {
			whole++
		}
		boundary := ends[whole] == cut
		if !s.found || len(s.rows) != whole || s.torn == boundary {
			t.Fatalf("cut at %d: %d rows, torn %v; want %d rows, torn %v", cut, len(s.rows), s.torn, whole, !boundary)
		}
	}
	for _, bad := range []func([]byte){
		func(b []byte) { b[0] = 'X' },  // magic
		func(b []byte) { b[5] ^= 1 },   // generation, under the CRC
		func(b []byte) { b[28] = 200 }, // boot id length
	} {
		c := bytes.Clone(b)
		bad(c)
		if s := parseJournal(c); s.found {
			t.Errorf("corrupt header accepted: %+v", s)
		}
	}
	c := bytes.Clone(b)
	c[len(c)-3] ^= 0xff // inside the last entry's payload
	if s := parseJournal(c); len(s.rows) != len(rows)-1 || !s.torn {
		t.Errorf("corrupt last entry: %d rows, torn %v", len(s.rows), s.torn)
	}
}

// Of the two files the valid one with the highest generation is read; a
// rewrite that stopped before its header leaves the other one in charge.
func TestJournalGenerations(t *testing.T) {
	dir := t.TempDir()
	j := &journal{path: filepath.Join(dir, "outbox.db")}
	rows := journalRows(t)
	write := func(i int, b []byte) {
		if err := os.WriteFile(j.name(i), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(0, journalBytes(4, 1, "b", rows[:1]))
	write(1, journalBytes(5, 2, "b", rows[:2]))
	if s, err := readJournal(j); err != nil || s.gen != 5 || s.idx != 1 || len(s.rows) != 2 {
		t.Fatalf("read %+v, %v; want generation 5 from file 1", s, err)
	}
	// File 0 rewritten up to its entries, header not yet written.
	unfinished := journalBytes(6, 3, "b", rows)
	copy(unfinished, make([]byte, headerSize))
	write(0, unfinished)
	if s, _ := readJournal(j); s.gen != 5 || s.idx != 1 {
		t.Fatalf("an unfinished rewrite was taken: %+v", s)
	}
	os.Remove(j.name(0))
	os.Remove(j.name(1))
	if s, err := readJournal(j); err != nil || s.found {
		t.Fatalf("no files: %+v, %v", s, err)
	}
}

// After a journal write fails, the journal is off (Stats.JournalErr) and
// both files are empty, so a crash now is treated like a power cut, not as
// a complete journal; the next commit turns it on again.
func TestJournalWriteFailureTurnsItOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushInterval: time.Hour})
	mustAppend(t, o, reading("s", 1, t0))
	o.mu.Lock()
	o.jr.f[o.jr.cur].Close() // the next write fails
	o.mu.Unlock()
	mustAppend(t, o, reading("s", 2, t0))
	if st := o.Stats(); st.JournalErr == nil || st.Buffered != 2 {
		t.Fatalf("after a failed journal write: %+v", st)
	}
	for i := range 2 {
		if fi, err := os.Stat(o.jr.name(i)); err == nil && fi.Size() != 0 {
			t.Errorf("journal file %d keeps %d bytes after the failure", i, fi.Size())
		}
	}
	if s, _ := readJournal(o.jr); s.found {
		t.Fatalf("a journal is still readable after the failure: %+v", s)
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.JournalErr != nil {
		t.Fatalf("journal still off after a successful commit: %v", st.JournalErr)
	}
	seq := mustAppend(t, o, reading("s", 3, t0))
	o.mu.Lock()
	s, err := readJournal(o.jr)
	o.mu.Unlock()
	if err != nil || len(s.rows) != 1 || s.rows[0].seq != seq {
		t.Fatalf("journal after it came back: %+v, %v; want seq %d in it", s, err, seq)
	}
}

func FuzzParseJournal(f *testing.F) {
	rows := journalRows(f)
	f.Add(journalBytes(1, 0, "b", rows))
	f.Add(journalBytes(2, 5, "", rows[:1]))
	f.Add(appendJournalHeader(nil, 3, 3, 1027, "x"))
	f.Add([]byte("OPJ2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := parseJournal(b)
		for _, r := range s.rows {
			rec, err := r.record()
			if err != nil {
				t.Fatalf("row %d decoded but does not convert: %v", r.seq, err)
			}
			if err := rec.Validate(); err != nil {
				t.Fatalf("row %d decoded but is invalid: %v", r.seq, err)
			}
			again := parseJournal(journalBytes(s.gen, s.base, s.boot, []row{r}))
			if len(again.rows) != 1 || !reflect.DeepEqual(again.rows[0], r) {
				t.Fatalf("row %d does not round-trip", r.seq)
			}
		}
	})
}
