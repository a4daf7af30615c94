package store

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/sqlitex"
)

func testBatches() []*logBatch {
	return []*logBatch{
		{device: "gw-1", recv: 1_700_000_000_123, rows: []logRow{
			{seq: 1, t: 5, kind: protocol.KindReading, sensor: "tank", value: 21.5, body: []byte(`{"seq":1}`)},
			{seq: 2, t: 0, kind: protocol.KindAlert, sensor: "", value: nil, body: []byte(`{"seq":2,"alert":{}}`)},
		}},
		{device: "gw-2", recv: 7, rows: []logRow{{seq: 9, kind: protocol.KindFault, sensor: "ph", body: []byte(`{}`)}}},
	}
}

func TestJournalRoundTripAndTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db-intake")
	j, got, err := openJournal(path)
	if err != nil || len(got) != 0 || j.gen != 0 {
		t.Fatalf("new journal: gen %d, %d batches, %v", j.gen, len(got), err)
	}
	if err := j.reset(41); err != nil {
		t.Fatal(err)
	}
	want := testBatches()
	if err := j.append(want[:1]); err != nil {
		t.Fatal(err)
	}
	if err := j.append(want[1:]); err != nil {
		t.Fatal(err)
	}
	j.close()
	b, _ := os.ReadFile(path)
	gen, got2, stop := parseJournal(b)
	if gen != 41 || stop != nil || len(got2) != 2 {
		t.Fatalf("parse: gen %d, %d batches, stop %v", gen, len(got2), stop)
	}
	for i := range want {
		if fmt.Sprint(*want[i]) != fmt.Sprint(got2[i]) {
			t.Fatalf("batch %d:\n got %v\nwant %v", i, got2[i], *want[i])
		}
	}
	// Every cut inside the second entry keeps the first and only it.
	first := len(b) - (len(b) - journalHeader - (8 + len(encodeEntry(nil, want[0]))))
	for cut := first; cut < len(b); cut++ {
		_, got, stop := parseJournal(b[:cut])
		if len(got) != 1 || (cut > first && stop == nil) {
			t.Fatalf("cut at %d: %d batches, stop %v", cut, len(got), stop)
		}
	}
	bad := append([]byte(nil), b...)
	bad[len(bad)-1] ^= 1
	if _, got, stop := parseJournal(bad); len(got) != 1 || stop == nil {
		t.Fatalf("flipped bit: %d batches, stop %v", len(got), stop)
	}
}

func FuzzParseJournal(f *testing.F) {
	var h []byte
	{
		dir := f.TempDir()
		jj, _, _ := openJournal(filepath.Join(dir, "j"))
		_ = jj.reset(3)
		_ = jj.append(testBatches())
		jj.close()
		h, _ = os.ReadFile(filepath.Join(dir, "j"))
	}
	f.Add(h)
	f.Add(h[:journalHeader])
	f.Add([]byte("OHJ1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, batches, _ := parseJournal(b)
		for _, bt := range batches {
			if bt.device == "" || len(bt.rows) == 0 {
				t.Fatalf("empty batch accepted: %+v", bt)
			}
			// What parses re-encodes and parses to the same batch.
			again, err := decodeEntry(encodeEntry(nil, &bt))
			if err != nil || fmt.Sprint(again) != fmt.Sprint(bt) {
				t.Fatalf("re-encoded batch: %v, %v; want %v", again, err, bt)
			}
		}
	})
}

// A batch acknowledged by AppendLog is in log after a kill -9 of the
// process that wrote it, and a journal already moved is not moved again.
func TestJournalSurvivesKill(t *testing.T) {
	if path := os.Getenv("OUTPOST_STORE_CRASH_HELPER"); path != "" {
		crashHelper(path)
		return
	}
	path := filepath.Join(t.TempDir(), "hub.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalSurvivesKill$")
	cmd.Env = append(os.Environ(), "OUTPOST_STORE_CRASH_HELPER="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{}
	sc := bufio.NewScanner(out)
	n := 0
	for sc.Scan() && n < 3000 {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		seq, _ := strconv.Atoi(f[1])
		acked[f[0]] = max(acked[f[0]], seq)
		n++
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if n < 3000 {
		t.Fatalf("helper acknowledged only %d batches", n)
	}
	ctx := context.Background()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for dev, last := range acked {
		seqs, err := s.Seqs(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) < last || seqs[last-1] != uint64(last) {
			t.Fatalf("%s: %d seqs after the kill, acknowledged 1..%d", dev, len(seqs), last)
		}
	}
	stored, dups, _ := s.Counts(ctx)
	if dups != 0 {
		t.Fatalf("%d duplicates after replaying the journal once", dups)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Reopened, nothing is moved again: the journal was emptied, and a
	// journal of an already moved generation is skipped.
	b, _ := os.ReadFile(path + "-intake")
	if len(b) != journalHeader {
		t.Fatalf("journal after a clean close: %d bytes, want the %d-byte header", len(b), journalHeader)
	}
	s2 := openAt(t, path, Options{})
	if n, d, _ := s2.Counts(ctx); n != 0 || d != 0 {
		t.Fatalf("reopen moved %d records (%d duplicates) again; first open stored %d", n, d, stored)
	}
}

// crashHelper appends batches for four devices from four goroutines and
// prints "device seq" after each AppendLog returned, until killed.
func crashHelper(path string) {
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for d := range 4 {
		wg.Go(func() {
			dev := fmt.Sprintf("gw-%d", d)
			for seq := 1; ; seq++ {
				if err := s.AppendLog(context.Background(), dev, readings(seq, 1, 1_700_000_000_000)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(w, "%s %d\n", dev, seq)
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// A journal whose generation a flush already recorded (a crash between the
// move and the emptying) is not moved again.
func TestJournalOfMovedGenerationIsSkipped(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(ctx, "gw", readings(1, 3, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Rebuild what the crash leaves: the moved generation's entries.
	db, err := sql.Open(sqlitex.DriverName, path)
	if err != nil {
		t.Fatal(err)
	}
	var gen uint64
	if err := db.QueryRow(`SELECT value FROM store_meta WHERE key = 'intake_journal_gen'`).Scan(&gen); err != nil {
		t.Fatal(err)
	}
	db.Close()
	j, _, err := openJournal(path + "-intake")
	if err != nil {
		t.Fatal(err)
	}
	v := 1.0
	row := logRow{seq: 1, t: 1000, kind: protocol.KindReading, sensor: "tank", value: v, body: []byte(`{"seq":1}`)}
	if err := j.reset(gen); err != nil {
		t.Fatal(err)
	}
	if err := j.append([]*logBatch{{device: "gw", recv: 1, rows: []logRow{row}}}); err != nil {
		t.Fatal(err)
	}
	j.close()
	s = openAt(t, path, Options{})
	if n, d, _ := s.Counts(ctx); n != 0 || d != 0 {
		t.Fatalf("a moved generation was moved again: %d stored, %d duplicates", n, d)
	}
	// The same entries under the next generation are moved (as duplicates).
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	j, _, _ = openJournal(path + "-intake")
	if err := j.reset(gen + 100); err != nil {
		t.Fatal(err)
	}
	_ = j.append([]*logBatch{{device: "gw", recv: 1, rows: []logRow{row}}})
	j.close()
	s = openAt(t, path, Options{})
	if n, d, _ := s.Counts(ctx); n != 0 || d != 1 {
		t.Fatalf("journal of a new generation: %d stored, %d duplicates; want 0 and 1", n, d)
	}
}

// When a journal write fails, batches still commit (through log_intake)
// before they are acknowledged.
func TestJournalWriteFailureFallsBack(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{})
	done := make(chan struct{})
	if err := s.exec(ctx, true, func(*wtx) error { s.j.f.Close(); close(done); return nil }); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := s.AppendLog(ctx, "gw", readings(1, 5, 1000)); err != nil {
		t.Fatalf("append with the journal's file closed: %v", err)
	}
	if s.intake.Load() != 5 {
		t.Fatalf("intake holds %d records, want the 5 the journal could not take", s.intake.Load())
	}
	if seqs, err := s.Seqs(ctx, "gw"); err != nil || len(seqs) != 5 {
		t.Fatalf("seqs %v, %v; want 1..5", seqs, err)
	}
}

// When moves into log keep failing, the journal stops taking batches at
// maxPending records: later batches go through the database (here the
// intake), and a move that works again stores them all.
func TestJournalBoundedWhileMovesFail(t *testing.T) {
	defer func(n int64) { maxPending = n }(maxPending)
	maxPending = 10
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	s := openAt(t, path, Options{})
	db, err := sql.Open(sqlitex.DriverName, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TRIGGER refuse BEFORE INSERT ON log BEGIN SELECT RAISE(ABORT, 'test: log refuses rows'); END`); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(ctx, "gw", readings(1, 10, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Counts(ctx); err == nil || !strings.Contains(err.Error(), "log refuses rows") {
		t.Fatalf("move with the trigger in place: %v, want the trigger's error", err)
	}
	if err := s.AppendLog(ctx, "gw", readings(11, 5, 1000)); err != nil {
		t.Fatalf("append past maxPending: %v", err)
	}
	if n := s.intake.Load(); n != 5 {
		t.Fatalf("intake holds %d records, want the 5 the full journal did not take", n)
	}
	if _, err := db.Exec(`DROP TRIGGER refuse`); err != nil {
		t.Fatal(err)
	}
	if seqs, err := s.Seqs(ctx, "gw"); err != nil || len(seqs) != 15 || seqs[14] != 15 {
		t.Fatalf("after the trigger went: seqs %v, %v; want 1..15", seqs, err)
	}
}

// A reader that saw AppendLog return finds the records: the writer counts
// them as pending before it acknowledges, so the reader's settle moves them.
func TestReadSeesAcknowledgedAppend(t *testing.T) {
	s := open(t, Options{})
	ctx := context.Background()
	for i := 1; i <= 300; i++ {
		if err := s.AppendLog(ctx, "gw", readings(i, 1, int64(i)*1000)); err != nil {
			t.Fatal(err)
		}
		seqs, err := s.Seqs(ctx, "gw")
		if err != nil || len(seqs) != i {
			t.Fatalf("after appending seq %d: read %d records (%v), want %d", i, len(seqs), err, i)
		}
	}
}
