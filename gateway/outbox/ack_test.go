package outbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// metaSeq reads meta.last_seq, the reserved high-water mark.
func metaSeq(t testing.TB, o *Outbox) uint64 {
	t.Helper()
	var v uint64
	if err := o.db.QueryRow(`SELECT last_seq FROM meta`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// storedSeqs reads the seqs of every row of the records table, acknowledged
// ones not deleted yet included.
func storedSeqs(t testing.TB, o *Outbox) []uint64 {
	t.Helper()
	rows, err := o.db.Query(`SELECT seq FROM records ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var seqs []uint64
	for rows.Next() {
		var s uint64
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// crashImage copies the database files of an open outbox, as a power cut
// would leave them (synchronous=FULL: what is committed is in the files),
// to a new directory, and returns the copy's path. Nothing may write to the
// outbox meanwhile.
func crashImage(t testing.TB, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "outbox.db")
	for _, suffix := range []string{"", "-wal"} {
		in, err := os.Open(path + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(dst + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		_ = in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// The reserved mark is durable before a seq under it is handed out, runs
// ahead in blocks, and is lowered to the last seq at Close, so that a clean
// restart continues without a gap.
func TestSeqReservation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushInterval: time.Hour, FlushRecords: 100})
	if got := metaSeq(t, o); got != reserveBlock {
		t.Fatalf("after Open: meta.last_seq = %d, want %d reserved", got, reserveBlock)
	}
	var cursor uint64
	for i := range 3 * reserveBlock {
		seq := mustAppend(t, o, reading("s", float64(i), t0))
		if r := metaSeq(t, o); r < seq {
			t.Fatalf("seq %d handed out above the durable reservation %d", seq, r)
		}
		// Half of them are published and acknowledged from the buffer.
		if i%2 == 0 {
			recs, err := o.Peek(bg, cursor, 0)
			if err != nil {
				t.Fatal(err)
			}
			cursor = recs[len(recs)-1].Seq
			if err := o.Ack(bg, seqsOf(recs)...); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := o.Stats().LastSeq
	if r := metaSeq(t, o); r < last || r > last+reserveBlock {
		t.Fatalf("meta.last_seq %d, last seq %d: want at most one block ahead", r, last)
	}
	mustClose(t, o)
	o = openT(t, path, Options{})
	if seq := mustAppend(t, o, reading("s", 0, t0)); seq != last+1 {
		t.Fatalf("after a clean Close and Open: seq %d, want %d (no gap)", seq, last+1)
	}
}

// A crash (or power cut) loses the unacknowledged buffer, but the seqs
// handed out before it are never assigned again: the next seq is above the
// reservation, so a record published from the buffer before the crash can
// not clash with a new one at the hub.
func TestSeqNeverReusedAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushInterval: time.Hour})
	for i := range 10 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustAppend(t, o, reading("s", float64(10+i), t0))
	}
	// The uplink publishes 11..15 from the buffer; the hub acknowledges
	// 11 and 12; then the power goes.
	recs, err := o.Peek(bg, 10, 0)
	if err != nil || !slices.Equal(seqsOf(recs), span(11, 15)) {
		t.Fatalf("Peek(10) = %v, %v; want 11..15", seqsOf(recs), err)
	}
	if err := o.Ack(bg, 11, 12); err != nil {
		t.Fatal(err)
	}
	img := crashImage(t, path)

	c := openT(t, img, Options{})
	if got := seqsOf(all(t, c)); !slices.Equal(got, span(1, 10)) {
		t.Fatalf("after the crash: stored %v, want 1..10 (the buffer is lost)", got)
	}
	seq := mustAppend(t, c, reading("s", 0, t0))
	if seq <= 15 {
		t.Fatalf("first seq after the crash = %d: seqs up to 15 were handed out (11 and 12 reached the hub)", seq)
	}
	if st := c.Stats(); st.Depth != 11 || st.LastSeq != seq {
		t.Fatalf("after the crash: %+v", st)
	}
	t.Logf("seqs 1..15 handed out, 1..10 committed; after the crash the next seq is %d", seq)
}

// Acknowledging records that are still buffered writes nothing to disk,
// ever: they are dropped from the buffer.
func TestAckBufferedWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushInterval: time.Hour})
	tx0 := o.txs.Load()
	wb0, _, haveIO := procIO(t)
	var cursor uint64
	for i := range 100 {
		mustAppend(t, o, reading(fmt.Sprintf("s%d", i%4), float64(i), t0))
		recs, err := o.Peek(bg, cursor, 0)
		if err != nil || len(recs) != 1 {
			t.Fatalf("Peek = %v, %v", seqsOf(recs), err)
		}
		cursor = recs[0].Seq
		if err := o.Ack(bg, cursor); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Flush(bg); err != nil { // nothing left to write
		t.Fatal(err)
	}
	if n := o.txs.Load() - tx0; n != 0 {
		t.Errorf("%d transactions for 100 records acknowledged while buffered, want 0", n)
	}
	if wb1, _, _ := procIO(t); haveIO && wb1 != wb0 {
		t.Errorf("%d bytes written (/proc/self/io write_bytes) for 100 records acknowledged while buffered, want 0", wb1-wb0)
	}
	st := o.Stats()
	if st.Depth != 0 || st.Bytes != 0 || st.Buffered != 0 || st.AckedUnwritten != 100 || st.OldestSeq != 0 || st.LastSeq != 100 {
		t.Fatalf("stats %+v", st)
	}
	for name, f := range map[string]func() ([]protocol.Record, error){
		"Peek":            func() ([]protocol.Record, error) { return o.Peek(bg, 0, 0) },
		"Pending":         func() ([]protocol.Record, error) { return o.Pending(bg, 0, 0) },
		"LatestPerSensor": func() ([]protocol.Record, error) { return o.LatestPerSensor(bg) },
	} {
		if recs, err := f(); err != nil || len(recs) != 0 {
			t.Errorf("%s = %v, %v; want nothing", name, seqsOf(recs), err)
		}
	}
	mustClose(t, o)
	o = openT(t, path, Options{})
	if got := storedSeqs(t, o); len(got) != 0 {
		t.Fatalf("stored after reopen: %v, want nothing", got)
	}
	if seq := mustAppend(t, o, reading("s", 0, t0)); seq != 101 {
		t.Fatalf("next seq after reopen = %d, want 101", seq)
	}
}

// Acknowledged stored records are hidden at once and deleted by the next
// commit, in the same transaction as its inserts; Close deletes them too.
func TestLazyDeletes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushInterval: time.Hour})
	for i := range 10 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	before := o.Stats()
	tx0 := o.txs.Load()
	if err := o.Ack(bg, 1, 2, 4, 4); err != nil {
		t.Fatal(err)
	}
	if n := o.txs.Load() - tx0; n != 0 {
		t.Fatalf("Ack of stored records ran %d transactions, want 0 (deletes wait for the next commit)", n)
	}
	if got := storedSeqs(t, o); !slices.Equal(got, span(1, 10)) {
		t.Fatalf("rows right after Ack: %v, want 1..10 (not deleted yet)", got)
	}
	st := o.Stats()
	if st.Depth != 7 || st.AckedStored != 3 || st.Bytes != before.Bytes*7/10 || st.OldestSeq != 3 {
		t.Fatalf("after acking 1, 2, 4: %+v", st)
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, []uint64{3, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("Pending after Ack: %v", got)
	}
	if recs, _ := o.Peek(bg, 0, 2); !slices.Equal(seqsOf(recs), []uint64{3, 5}) {
		t.Fatalf("Peek(0, 2) after Ack: %v, want [3 5]", seqsOf(recs))
	}
	if err := o.Ack(bg, 3); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.OldestSeq != 5 || st.Depth != 6 {
		t.Fatalf("after acking 3: oldest %d, depth %d; want 5, 6", st.OldestSeq, st.Depth)
	}

	// The next commit inserts and deletes in one transaction.
	for i := range 3 {
		mustAppend(t, o, reading("s", float64(10+i), t0))
	}
	tx0 = o.txs.Load()
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if n := o.txs.Load() - tx0; n != 1 {
		t.Fatalf("flush with 3 inserts and 4 deletes: %d transactions, want 1", n)
	}
	if got := storedSeqs(t, o); !slices.Equal(got, span(5, 13)) {
		t.Fatalf("rows after the flush: %v, want 5..13", got)
	}
	if st := o.Stats(); st.Depth != 9 || st.AckedStored != 0 || st.OldestSeq != 5 || st.Bytes != 9*32 {
		t.Fatalf("after the flush: %+v", st)
	}
	// Acknowledged again, or never stored: ignored.
	if err := o.Ack(bg, 1, 2, 3, 4); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 9 || st.AckedStored != 0 {
		t.Fatalf("after acking deleted seqs again: %+v", st)
	}

	// Close applies the pending deletes.
	if err := o.Ack(bg, span(5, 10)...); err != nil {
		t.Fatal(err)
	}
	mustClose(t, o)
	o = openT(t, path, Options{})
	if got := storedSeqs(t, o); !slices.Equal(got, span(11, 13)) {
		t.Fatalf("rows after Close and Open: %v, want 11..13", got)
	}
	if st := o.Stats(); st.Depth != 3 || st.OldestSeq != 11 || st.LastSeq != 13 {
		t.Fatalf("after reopen: %+v", st)
	}
}

// The flush timer applies pending deletes even when nothing new is
// appended.
func TestTimedDeletes(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: 20 * time.Millisecond})
	for i := range 5 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(bg, span(1, 5)...); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(storedSeqs(t, o)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("acknowledged records not deleted by the flush timer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := o.Stats(); st.Depth != 0 || st.AckedStored != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Records acknowledged while a commit writes them are hidden at once, and
// deleted by the next commit; if the commit fails, they are not retried.
func TestAckDuringCommit(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: time.Hour})
	for i := range 4 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	var hookErr error
	fail := errors.New("injected")
	o.wmu.Lock()
	o.beforeCommit = func() error {
		if err := o.Ack(bg, 2); err != nil {
			return err
		}
		recs, err := o.Peek(bg, 0, 0)
		if err != nil {
			return err
		}
		if got := seqsOf(recs); !slices.Equal(got, []uint64{1, 3, 4}) {
			hookErr = fmt.Errorf("Peek during the commit = %v, want [1 3 4]", got)
		}
		if st := o.Stats(); st.Depth != 3 || st.Buffered != 3 {
			hookErr = fmt.Errorf("stats during the commit: %+v", st)
		}
		return nil
	}
	o.wmu.Unlock()
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if st := o.Stats(); st.Depth != 3 || st.AckedStored != 1 || st.AckedUnwritten != 0 || st.CommittedSeq != 4 {
		t.Fatalf("after the commit: %+v", st)
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, []uint64{1, 3, 4}) {
		t.Fatalf("Pending after the commit = %v", got)
	}

	// A failing commit: the record acknowledged meanwhile is not retried.
	for i := range 3 {
		mustAppend(t, o, reading("s", float64(4+i), t0)) // 5, 6, 7
	}
	o.wmu.Lock()
	o.beforeCommit = func() error {
		if err := o.Ack(bg, 6); err != nil {
			return err
		}
		return fail
	}
	o.wmu.Unlock()
	if err := o.Flush(bg); !errors.Is(err, fail) {
		t.Fatalf("Flush with a failing commit: %v", err)
	}
	if st := o.Stats(); st.Depth != 5 || st.Buffered != 2 || st.AckedStored != 1 || st.AckedUnwritten != 1 || st.FlushErr == nil {
		t.Fatalf("after the failed commit: %+v", st)
	}
	if recs, _ := o.Peek(bg, 4, 0); !slices.Equal(seqsOf(recs), []uint64{5, 7}) {
		t.Fatalf("Peek(4) after the failed commit = %v, want [5 7]", seqsOf(recs))
	}
	o.wmu.Lock()
	o.beforeCommit = nil
	o.wmu.Unlock()
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if got := storedSeqs(t, o); !slices.Equal(got, []uint64{1, 3, 4, 5, 7}) {
		t.Fatalf("rows = %v, want [1 3 4 5 7] (2 deleted, 6 never written)", got)
	}
	if st := o.Stats(); st.Depth != 5 || st.Buffered != 0 || st.AckedStored != 0 || st.FlushErr != nil {
		t.Fatalf("after the retried commit: %+v", st)
	}
}

// A drop notice acknowledged while it is still buffered reports the drops:
// the range is cleared (persistently) and not reported again.
func TestDropNoticeAckedUnwritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	opts := Options{MaxRecords: 10, FlushInterval: time.Hour, DropNotice: dropNotice}
	o := openT(t, path, opts)
	for i := range 15 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil { // drops 1..5, queues the notice as seq 16
		t.Fatal(err)
	}
	recs, err := o.Peek(bg, 15, 0)
	if err != nil || len(recs) != 1 || recs[0].Fault == nil || recs[0].Fault.Detail != "5 records dropped, seqs 1..5 (max_records)" {
		t.Fatalf("Peek(15) = %+v, %v; want the drop notice", recs, err)
	}
	if err := o.Ack(bg, recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Unreported.Count != 0 || st.Dropped != 5 || st.Buffered != 0 {
		t.Fatalf("after acking the buffered notice: %+v", st)
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	mustClose(t, o)
	o = openT(t, path, opts)
	if st := o.Stats(); st.Unreported.Count != 0 || st.Dropped != 5 || st.Buffered != 0 || st.Depth != 10 {
		t.Fatalf("after reopen: %+v (the drop was reported)", st)
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, span(6, 15)) {
		t.Fatalf("stored %v, want 6..15", got)
	}
}

// A publisher, a hub that acknowledges a little later, the flush timer and
// readers run at once: every record is published exactly once, in seq
// order, without gaps; no read returns a record acknowledged before it
// started; Depth ends at 0 and Close leaves nothing stored. In the
// "buffered" run most records are acknowledged before they are committed,
// in the "stored" run most after (so commits delete many acknowledged rows
// while the readers read).
func TestAckedNeverReturned(t *testing.T) {
	t.Run("buffered", func(t *testing.T) {
		ackedNeverReturned(t, 1500, Options{FlushInterval: 5 * time.Millisecond, FlushRecords: 16}, 20)
	})
	t.Run("stored", func(t *testing.T) {
		ackedNeverReturned(t, 800, Options{FlushInterval: 2 * time.Millisecond, FlushRecords: 8}, 0)
	})
}

// ackedNeverReturned runs TestAckedNeverReturned with n records; the
// producer pauses 1 ms every pauseEvery records (0: never).
func ackedNeverReturned(t *testing.T, n int, opts Options, pauseEvery int) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, opts)

	var (
		ackMu sync.Mutex
		acked = map[uint64]bool{}
	)
	ackedSnapshot := func() map[uint64]bool {
		ackMu.Lock()
		defer ackMu.Unlock()
		m := make(map[uint64]bool, len(acked))
		for k := range acked {
			m[k] = true
		}
		return m
	}
	check := func(what string, before map[uint64]bool, recs []protocol.Record, err error) {
		if err != nil {
			t.Errorf("%s: %v", what, err)
			return
		}
		for _, r := range recs {
			if before[r.Seq] {
				t.Errorf("%s returned seq %d, acknowledged before the call", what, r.Seq)
			}
		}
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	// Producer: readings of 5 sensors, every 50th record an alert.
	wg.Go(func() {
		for i := range n {
			rec := reading(fmt.Sprintf("s%d", i%5), float64(i), t0)
			if i%50 == 49 {
				rec = alert("s0", "low", protocol.AlertRaised, t0)
			}
			if _, err := o.Append(bg, rec); err != nil {
				t.Error(err)
				return
			}
			if pauseEvery > 0 && i%pauseEvery == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	// Publisher and hub: peeks after its cursor, acknowledges each batch
	// one batch later (the PUBACK takes a while).
	var published []uint64
	wg.Go(func() {
		var cursor uint64
		var prev []uint64
		for len(published) < n {
			last, ch := o.Appended()
			before := ackedSnapshot()
			recs, err := o.Peek(bg, cursor, 7)
			check("Peek", before, recs, err)
			if len(recs) == 0 {
				if last > cursor {
					t.Errorf("Peek(%d) returned nothing, but seqs up to %d were appended", cursor, last)
					return
				}
				select {
				case <-ch:
				case <-time.After(10 * time.Second):
					t.Errorf("no record after seq %d", cursor)
					return
				}
				continue
			}
			cursor = recs[len(recs)-1].Seq
			published = append(published, seqsOf(recs)...)
			if err := o.Ack(bg, prev...); err != nil {
				t.Error(err)
				return
			}
			ackMu.Lock()
			for _, s := range prev {
				acked[s] = true
			}
			ackMu.Unlock()
			prev = seqsOf(recs)
		}
		if err := o.Ack(bg, prev...); err != nil {
			t.Error(err)
		}
		ackMu.Lock()
		for _, s := range prev {
			acked[s] = true
		}
		ackMu.Unlock()
	})
	// Readers.
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			before := ackedSnapshot()
			recs, err := o.Pending(bg, 0, 50)
			check("Pending", before, recs, err)
			before = ackedSnapshot()
			recs, err = o.PendingAlerts(bg, 0, 0)
			check("PendingAlerts", before, recs, err)
			before = ackedSnapshot()
			recs, err = o.LatestPerSensor(bg)
			check("LatestPerSensor", before, recs, err)
			if st := o.Stats(); st.Depth < 0 || st.Bytes < 0 || st.Buffered < 0 {
				t.Errorf("stats %+v", st)
			}
			time.Sleep(time.Millisecond) // leave the CPU to the publisher
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}
	if !slices.Equal(published, span(1, uint64(n))) {
		t.Fatalf("published %d records, not exactly 1..%d in order", len(published), n)
	}
	st := o.Stats()
	if st.Depth != 0 || st.Bytes != 0 || st.Buffered != 0 || st.OldestSeq != 0 {
		t.Fatalf("after everything was acknowledged: %+v", st)
	}
	t.Logf("%d records: %d acknowledged before they were written", n, st.AckedUnwritten)
	mustClose(t, o)
	o = openT(t, path, Options{})
	if got := storedSeqs(t, o); len(got) != 0 {
		t.Fatalf("stored after Close: %d rows, want none", len(got))
	}
	if seq := mustAppend(t, o, reading("s", 0, t0)); seq != uint64(n)+1 {
		t.Fatalf("next seq after reopen = %d, want %d", seq, n+1)
	}
}

// A stored record acknowledged while a commit drops it (bounds) is not
// counted twice: Depth stays right, and the next commit deletes only what
// is left.
func TestAckDuringDroppingCommit(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{MaxRecords: 5, FlushInterval: time.Hour})
	for i := range 5 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustAppend(t, o, reading("s", float64(5+i), t0)) // 6, 7, 8
	}
	o.wmu.Lock()
	o.beforeCommit = func() error { return o.Ack(bg, 1, 7) } // 1 is being dropped, 7 being written
	o.wmu.Unlock()
	if err := o.Flush(bg); err != nil { // inserts 6..8, drops 1..3
		t.Fatal(err)
	}
	o.wmu.Lock()
	o.beforeCommit = nil
	o.wmu.Unlock()
	st := o.Stats()
	if st.Depth != 4 || st.AckedStored != 1 || st.Dropped != 3 || st.Unreported != (DropRange{First: 1, Last: 3, Count: 3, Reasons: "max_records"}) || st.OldestSeq != 4 {
		t.Fatalf("after the dropping commit: %+v", st)
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, []uint64{4, 5, 6, 8}) {
		t.Fatalf("Pending = %v, want [4 5 6 8]", got)
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if got := storedSeqs(t, o); !slices.Equal(got, []uint64{4, 5, 6, 8}) {
		t.Fatalf("rows = %v, want [4 5 6 8]", got)
	}
	if st := o.Stats(); st.Depth != 4 || st.AckedStored != 0 || st.Bytes != 4*32 {
		t.Fatalf("after the next commit: %+v", st)
	}
}

// once returns a hook that runs f the first time it is called.
func once(f func()) func() {
	var done bool
	return func() {
		if !done {
			done = true
			f()
		}
	}
}

// A commit that deletes acknowledged rows between a read of the table and
// the check of its rows against the acknowledged ones must not let those
// rows through: the read starts again. The same for Ack: a row it found
// may be dropped by a commit before it is marked acknowledged.
func TestReadRacesCommit(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: time.Hour, MaxRecords: 10})
	for i := range 10 {
		mustAppend(t, o, reading(fmt.Sprintf("s%d", i%2), float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(bg, 1, 2, 3, 9, 10); err != nil {
		t.Fatal(err)
	}
	flush := func() {
		if err := o.Flush(bg); err != nil { // deletes 1, 2, 3, 9, 10
			t.Error(err)
		}
	}
	o.afterRead = once(flush)
	recs, err := o.Pending(bg, 0, 0)
	if err != nil || !slices.Equal(seqsOf(recs), span(4, 8)) {
		t.Fatalf("Pending with a commit during the read = %v, %v; want 4..8", seqsOf(recs), err)
	}

	if err := o.Ack(bg, 7, 8); err != nil {
		t.Fatal(err)
	}
	o.afterRead = once(flush) // deletes 7, 8
	recs, err = o.LatestPerSensor(bg)
	if err != nil || !slices.Equal(seqsOf(recs), []uint64{5, 6}) {
		t.Fatalf("LatestPerSensor with a commit during the read = %v, %v; want [5 6]", seqsOf(recs), err)
	}

	// Ack(4) finds row 4; before it marks it, a commit drops it (rows 4,
	// 5, 6 and 11 new ones, MaxRecords 10).
	o.afterRead = once(func() {
		for i := range 11 {
			mustAppend(t, o, reading("s0", float64(i), t0))
		}
		flush()
	})
	if err := o.Ack(bg, 4); err != nil {
		t.Fatal(err)
	}
	o.afterRead = nil
	if st := o.Stats(); st.Depth != 10 || st.AckedStored != 0 || st.Dropped != 4 {
		t.Fatalf("after Ack raced a dropping commit: %+v, want depth 10, nothing acknowledged stored, 4 dropped (4, 5, 6, 11)", st)
	}
}
