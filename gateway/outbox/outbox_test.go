package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/sqlitex"
)

var bg = context.Background()

const t0 = 1_780_000_000_000 // unix ms, event times in tests

func reading(sensor string, v float64, t int64) protocol.Record {
	return protocol.Record{Kind: protocol.KindReading, Time: t, Sensor: sensor, Value: &v, Unit: "C"}
}

func alert(sensor, rule, state string, t int64) protocol.Record {
	return protocol.Record{Kind: protocol.KindAlert, Time: t, Sensor: sensor, Alert: &protocol.Alert{
		Rule: rule, State: state, Severity: "warning", Value: 9.5, Window: "avg 1m", Since: t - 60_000,
		Message: "temperature below 10", Labels: map[string]string{"site": "north"},
	}}
}

// openT opens an outbox that the test closes at cleanup (unless it did).
func openT(t testing.TB, path string, opts Options) *Outbox {
	t.Helper()
	o, err := Open(bg, path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := o.Close(bg); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return o
}

func mustAppend(t testing.TB, o *Outbox, rec protocol.Record) uint64 {
	t.Helper()
	seq, err := o.Append(bg, rec)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

func mustClose(t testing.TB, o *Outbox) {
	t.Helper()
	if err := o.Close(bg); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// all returns every committed record, paging through Pending.
func all(t testing.TB, o *Outbox) []protocol.Record {
	t.Helper()
	var out []protocol.Record
	var after uint64
	for {
		recs, err := o.Pending(bg, after, 100)
		if err != nil {
			t.Fatalf("Pending: %v", err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		after = recs[len(recs)-1].Seq
	}
}

func seqsOf(recs []protocol.Record) []uint64 {
	s := make([]uint64, len(recs))
	for i, r := range recs {
		s[i] = r.Seq
	}
	return s
}

func span(first, last uint64) []uint64 {
	var s []uint64
	for i := first; i <= last; i++ {
		s = append(s, i)
	}
	return s
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestSeqMonotonicAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	var want uint64
	for round := range 3 {
		o := openT(t, path, Options{FlushRecords: 7})
		for i := range 20 {
			want++
			if seq := mustAppend(t, o, reading("s", float64(i), t0)); seq != want {
				t.Fatalf("round %d: seq %d, want %d", round, seq, want)
			}
		}
		mustClose(t, o)
	}
	o := openT(t, path, Options{})
	if got := seqsOf(all(t, o)); !slices.Equal(got, span(1, 60)) {
		t.Fatalf("stored seqs %v, want 1..60", got)
	}
	if st := o.Stats(); st.LastSeq != 60 || st.CommittedSeq != 60 || st.Depth != 60 || st.OldestSeq != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// The high-water mark must survive the deletion of every record: with
// AUTOINCREMENT-less rowids, max(seq) alone would restart at 1.
func TestSeqNotReusedAfterAckAllAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{})
	for i := range 10 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(bg, span(1, 10)...); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 0 || st.Bytes != 0 || st.OldestSeq != 0 {
		t.Fatalf("after ack-all: %+v", st)
	}
	mustClose(t, o)

	o = openT(t, path, Options{})
	if seq := mustAppend(t, o, reading("s", 1, t0)); seq != 11 {
		t.Fatalf("seq after ack-all and reopen = %d, want 11", seq)
	}
	mustClose(t, o)

	// Also after records are dropped by the bounds.
	o = openT(t, path, Options{MaxRecords: 2})
	for i := range 5 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(bg, 15, 16); err != nil {
		t.Fatal(err)
	}
	mustClose(t, o)
	o = openT(t, path, Options{})
	if seq := mustAppend(t, o, reading("s", 1, t0)); seq != 17 {
		t.Fatalf("seq after drops, ack-all and reopen = %d, want 17", seq)
	}
}

func TestCloseFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushInterval: time.Hour, FlushRecords: 1000})
	for i := range 50 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if st := o.Stats(); st.Buffered != 50 || st.Depth != 50 || st.CommittedSeq != 0 {
		t.Fatalf("before Close: %+v, want 50 buffered (and pending), none committed", st)
	}
	mustClose(t, o)
	for name, err := range map[string]error{
		"Append":  func() error { _, err := o.Append(bg, reading("s", 1, t0)); return err }(),
		"Flush":   o.Flush(bg),
		"Ack":     o.Ack(bg, 1),
		"Pending": func() error { _, err := o.Pending(bg, 0, 0); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if err := o.Close(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
	o = openT(t, path, Options{})
	if got := seqsOf(all(t, o)); !slices.Equal(got, span(1, 50)) {
		t.Fatalf("after Close and reopen: %v, want 1..50", got)
	}
}

// A buffered record is visible to Peek, PendingAlerts and LatestPerSensor
// (so the uplink may publish it before it is committed) but not to Pending,
// which lists committed records only. Acknowledging a buffered record drops
// it: it is never written.
func TestBufferedIsVisible(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: time.Hour})
	appended, ach := o.Appended()
	if appended != 0 {
		t.Fatalf("Appended = %d before any Append", appended)
	}
	mustAppend(t, o, reading("s", 1, t0))
	select {
	case <-ach:
	default:
		t.Fatal("Appended channel not closed by Append")
	}
	mustAppend(t, o, alert("s", "low", protocol.AlertRaised, t0))
	mustAppend(t, o, reading("s", 3, t0))
	if seq, _ := o.Appended(); seq != 3 {
		t.Fatalf("Appended = %d, want 3", seq)
	}
	for name, c := range map[string]struct {
		f    func() ([]protocol.Record, error)
		want []uint64
	}{
		"Pending":         {func() ([]protocol.Record, error) { return o.Pending(bg, 0, 0) }, nil},
		"Peek":            {func() ([]protocol.Record, error) { return o.Peek(bg, 0, 0) }, []uint64{1, 2, 3}},
		"Peek after 1":    {func() ([]protocol.Record, error) { return o.Peek(bg, 1, 1) }, []uint64{2}},
		"PendingAlerts":   {func() ([]protocol.Record, error) { return o.PendingAlerts(bg, 0, 0) }, []uint64{2}},
		"LatestPerSensor": {func() ([]protocol.Record, error) { return o.LatestPerSensor(bg) }, []uint64{3}},
	} {
		recs, err := c.f()
		if err != nil || !slices.Equal(seqsOf(recs), c.want) {
			t.Errorf("%s before commit = %v, %v; want %v", name, seqsOf(recs), err, c.want)
		}
	}
	// Buffered records read back exactly as they will be stored.
	peeked, _ := o.Peek(bg, 0, 0)
	if err := o.Ack(bg, 4); err == nil {
		t.Error("Ack of a seq never assigned succeeded")
	}
	if err := o.Ack(bg, 3); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 2 || st.Buffered != 2 || st.AckedUnwritten != 1 || st.Bytes != 32+alertSize(t) {
		t.Fatalf("after acking buffered seq 3: %+v", st)
	}
	if recs, _ := o.LatestPerSensor(bg); !slices.Equal(seqsOf(recs), []uint64{1}) {
		t.Fatalf("LatestPerSensor after acking seq 3 = %v, want [1]", seqsOf(recs))
	}
	committed, ch := o.Committed()
	if committed != 0 {
		t.Fatalf("Committed = %d before any commit", committed)
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Error("Committed channel not closed by the commit")
	}
	if committed, _ := o.Committed(); committed != 2 {
		t.Errorf("Committed = %d, want 2", committed)
	}
	stored := all(t, o)
	if !slices.Equal(seqsOf(stored), []uint64{1, 2}) {
		t.Fatalf("after Flush: %v, want [1 2] (3 was acknowledged before it was written)", seqsOf(stored))
	}
	if !reflect.DeepEqual(stored, peeked[:2]) {
		t.Fatalf("stored records differ from the buffered ones:\n got %+v\nwant %+v", stored, peeked[:2])
	}
}

// alertSize is the estimated stored size of alert(...).
func alertSize(t testing.TB) int64 {
	t.Helper()
	rec := alert("s", "low", protocol.AlertRaised, t0)
	r, err := encode(&rec)
	if err != nil {
		t.Fatal(err)
	}
	return r.size()
}

func TestTimedFlush(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: 20 * time.Millisecond})
	_, ch := o.Committed()
	mustAppend(t, o, reading("s", 1, t0))
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("buffer not committed by the flush timer")
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("committed %v", got)
	}
	// A second group gets its own timer.
	_, ch = o.Committed()
	mustAppend(t, o, reading("s", 2, t0))
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("second group not committed by the flush timer")
	}
}

func TestFlushRecordsTriggersCommit(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: time.Hour, FlushRecords: 10})
	for i := range 25 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if st := o.Stats(); st.CommittedSeq != 20 || st.Buffered != 5 || st.Depth != 25 {
		t.Fatalf("stats %+v, want 20 committed and 5 buffered", st)
	}
}

func TestRoundTrip(t *testing.T) {
	v := -3.25
	recs := []protocol.Record{
		reading("tank1.temp", 21.5, t0),
		reading("tank1.ph", 7, t0+1), // integral value: stored as an integer by SQLite
		{Kind: protocol.KindReading, Clock: protocol.ClockMono, Boot: "b0a7", MonoMS: 12345, Sensor: "x", Value: &v},
		alert("tank1.temp", "low-temp", protocol.AlertRaised, t0+2),
		alert("", "fleet", protocol.AlertCleared, t0+3),
		{Kind: protocol.KindFault, Time: t0 + 4, Sensor: "tank1.ph", Fault: &protocol.Fault{Cause: "crc", Detail: "bad crc 0x3f"}},
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{})
	for i := range recs {
		recs[i].Seq = mustAppend(t, o, recs[i])
	}
	mustClose(t, o)
	o = openT(t, path, Options{})
	got := all(t, o)
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, recs)
	}
	want := int64(0)
	for _, r := range recs {
		r.Seq = 0
		row, _ := encode(&r)
		want += row.size()
	}
	if st := o.Stats(); st.Bytes != want {
		t.Errorf("Bytes after reopen = %d, want %d (SQL and Go size estimates differ)", st.Bytes, want)
	}
}

func TestAppendRejectsInvalid(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{})
	nan := 0.0
	nan /= nan
	for name, rec := range map[string]protocol.Record{
		"has seq":      {Seq: 5, Kind: protocol.KindReading, Time: t0, Sensor: "s", Value: &nan},
		"no value":     {Kind: protocol.KindReading, Time: t0, Sensor: "s"},
		"NaN":          {Kind: protocol.KindReading, Time: t0, Sensor: "s", Value: &nan},
		"unknown kind": {Kind: "gossip", Time: t0, Sensor: "s"},
		"no time":      reading("s", 1, 0),
	} {
		if _, err := o.Append(bg, rec); err == nil {
			t.Errorf("%s: Append accepted an invalid record", name)
		}
	}
	if seq := mustAppend(t, o, reading("s", 1, t0)); seq != 1 {
		t.Fatalf("rejected records consumed seqs: first valid got %d", seq)
	}
}

func TestAck(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{})
	for i := range 10 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	before := o.Stats()
	if err := o.Ack(bg, 1, 2, 5, 5, 99); err == nil {
		t.Fatal("Ack with an uncommitted seq (99) succeeded")
	}
	if err := o.Ack(bg, 1, 2, 5, 5); err != nil { // duplicates are fine
		t.Fatal(err)
	}
	if err := o.Ack(bg, 1, 2); err != nil { // already gone: ignored
		t.Fatal(err)
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, []uint64{3, 4, 6, 7, 8, 9, 10}) {
		t.Fatalf("after Ack: %v", got)
	}
	st := o.Stats()
	if st.Depth != 7 || st.OldestSeq != 3 || st.Bytes != before.Bytes*7/10 {
		t.Fatalf("stats after Ack: %+v (before %+v)", st, before)
	}
}

func TestOrderingAPI(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{})
	// seq: 1 a, 2 b, 3 alert raised, 4 a, 5 fault b, 6 c, 7 alert cleared, 8 a, 9 alert raised (other rule)
	mustAppend(t, o, reading("a", 1, t0))
	mustAppend(t, o, reading("b", 1, t0))
	mustAppend(t, o, alert("a", "low", protocol.AlertRaised, t0))
	mustAppend(t, o, reading("a", 2, t0+1))
	mustAppend(t, o, protocol.Record{Kind: protocol.KindFault, Time: t0, Sensor: "b", Fault: &protocol.Fault{Cause: "timeout"}})
	mustAppend(t, o, reading("c", 1, t0))
	mustAppend(t, o, alert("a", "low", protocol.AlertCleared, t0+2))
	mustAppend(t, o, reading("a", 3, t0+2))
	mustAppend(t, o, alert("b", "jump", protocol.AlertRaised, t0+3))
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}

	alerts, err := o.PendingAlerts(bg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(alerts); !slices.Equal(got, []uint64{3, 7, 9}) {
		t.Fatalf("PendingAlerts = %v, want [3 7 9]", got)
	}
	if alerts, _ := o.PendingAlerts(bg, 3, 1); !slices.Equal(seqsOf(alerts), []uint64{7}) {
		t.Fatalf("PendingAlerts(after 3, limit 1) = %v, want [7]", seqsOf(alerts))
	}

	latest, err := o.LatestPerSensor(bg)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(latest); !slices.Equal(got, []uint64{2, 6, 8}) {
		t.Fatalf("LatestPerSensor = %v, want [2 6 8] (b, c, a)", got)
	}
	if *latest[2].Value != 3 || latest[2].Sensor != "a" {
		t.Fatalf("LatestPerSensor a = %+v", latest[2])
	}

	// The uplink's order after an outage: alerts, latest, then the backlog.
	if err := o.Ack(bg, seqsOf(alerts)...); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(bg, seqsOf(latest)...); err != nil {
		t.Fatal(err)
	}
	// Sensor a's newest reading was acknowledged: it is no longer "latest".
	if latest, _ := o.LatestPerSensor(bg); !slices.Equal(seqsOf(latest), []uint64{4}) {
		t.Fatalf("LatestPerSensor after acks = %v, want [4]", seqsOf(latest))
	}
	backlog, err := o.Pending(bg, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(backlog); !slices.Equal(got, []uint64{1, 4}) {
		t.Fatalf("Pending(0, 2) = %v, want [1 4]", got)
	}
	if rest, _ := o.Pending(bg, 4, 0); !slices.Equal(seqsOf(rest), []uint64{5}) {
		t.Fatalf("Pending(4) = %v, want [5]", seqsOf(rest))
	}

	// A sensor whose unit changed is still one sensor (a: seq 4 in C, 10 in F).
	f := reading("a", 50, t0)
	f.Unit = "F"
	mustAppend(t, o, f) // 10
	mustAppend(t, o, reading("d", 1, t0))
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if latest, _ := o.LatestPerSensor(bg); !slices.Equal(seqsOf(latest), []uint64{10, 11}) || latest[0].Unit != "F" {
		t.Fatalf("LatestPerSensor after a unit change = %+v, want seqs [10 11]", latest)
	}
}

// PendingAlerts must not scan the readings: it has to use the partial index.
func TestAlertsQueryUsesIndex(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{})
	rows, err := o.db.Query(`EXPLAIN QUERY PLAN `+alertsSQL, 0, 100, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rows.Close() }()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "records_alerts") {
		t.Fatalf("alerts query plan %q does not use records_alerts", p)
	}
}

func TestBoundsMaxRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{MaxRecords: 100, FlushRecords: 50})
	for i := range 250 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	want := DropRange{First: 1, Last: 150, Count: 150, Reasons: "max_records"}
	if st.Depth != 100 || st.Dropped != 150 || st.OldestSeq != 151 || st.Unreported != want {
		t.Fatalf("stats %+v, want depth 100, dropped 150, oldest 151, unreported %+v", st, want)
	}
	if got := seqsOf(all(t, o)); !slices.Equal(got, span(151, 250)) {
		t.Fatalf("kept %v, want 151..250", got)
	}
	mustClose(t, o)

	// The counters persist; a smaller bound applies at Open.
	o = openT(t, path, Options{MaxRecords: 10})
	st = o.Stats()
	want = DropRange{First: 1, Last: 240, Count: 240, Reasons: "max_records"}
	if st.Depth != 10 || st.Dropped != 240 || st.Unreported != want || st.LastSeq != 250 {
		t.Fatalf("after reopen with MaxRecords 10: %+v", st)
	}
}

func TestBoundsMaxBytes(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{MaxBytes: 1000})
	rec := reading("sensor", 1, t0) // 32 bytes
	for range 100 {
		mustAppend(t, o, rec)
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Bytes != 992 || st.Depth != 31 || st.Dropped != 69 || st.Unreported.Reasons != "max_bytes" {
		t.Fatalf("stats %+v, want 31 records of 32 bytes, 69 dropped for max_bytes", st)
	}
}

func TestBoundsMaxAge(t *testing.T) {
	clk := &fakeClock{now: time.UnixMilli(t0)}
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{MaxAge: time.Hour, Clock: clk.Now})
	for range 5 {
		mustAppend(t, o, reading("s", 1, t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	clk.Advance(50 * time.Minute)
	for range 3 {
		mustAppend(t, o, reading("s", 2, t0))
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Depth != 8 || st.OldestAge != 50*time.Minute {
		t.Fatalf("before expiry: %+v", st)
	}
	clk.Advance(11 * time.Minute)
	mustAppend(t, o, reading("s", 3, t0))
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Depth != 4 || st.OldestSeq != 6 || st.Unreported != (DropRange{First: 1, Last: 5, Count: 5, Reasons: "max_age"}) {
		t.Fatalf("after expiry: %+v", st)
	}
	if st.OldestAge != 11*time.Minute {
		t.Errorf("OldestAge = %v, want 11m", st.OldestAge)
	}
	mustClose(t, o)

	// Expired while the gateway was off: dropped at Open.
	clk.Advance(2 * time.Hour)
	o = openT(t, path, Options{MaxAge: time.Hour, Clock: clk.Now})
	if st := o.Stats(); st.Depth != 0 || st.Dropped != 9 || st.Unreported.Count != 9 {
		t.Fatalf("after Open 2 h later: %+v", st)
	}
}

func dropNotice(d DropRange) protocol.Record {
	return protocol.Record{Kind: protocol.KindFault, Time: t0, Sensor: "outbox", Fault: &protocol.Fault{
		Cause:  "dropped",
		Detail: fmt.Sprintf("%d records dropped, seqs %d..%d (%s)", d.Count, d.First, d.Last, d.Reasons),
	}}
}

func TestDropNotice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	opts := Options{MaxRecords: 10, FlushInterval: time.Hour, DropNotice: dropNotice}
	o := openT(t, path, opts)
	for i := range 15 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	if err := o.Flush(bg); err != nil { // drops 1..5, queues the notice as seq 16
		t.Fatal(err)
	}
	if st := o.Stats(); st.Unreported.Count != 5 || st.Buffered != 1 || st.LastSeq != 16 {
		t.Fatalf("after the dropping commit: %+v", st)
	}
	mustClose(t, o) // commits the notice (and drops seq 6 for it)

	o = openT(t, path, opts)
	recs := all(t, o)
	last := recs[len(recs)-1]
	if last.Seq != 16 || last.Kind != protocol.KindFault || last.Fault.Detail != "5 records dropped, seqs 1..5 (max_records)" {
		t.Fatalf("last record %+v, want the drop notice for 1..5", last)
	}
	// Committing the notice dropped seq 6: that drop is reported by a new notice.
	st := o.Stats()
	if st.Dropped != 6 || st.Unreported != (DropRange{First: 6, Last: 6, Count: 1, Reasons: "max_records"}) || st.Buffered != 1 {
		t.Fatalf("after reopen: %+v", st)
	}
	if err := o.Flush(bg); err != nil {
		t.Fatal(err)
	}
	recs = all(t, o)
	if last := recs[len(recs)-1]; last.Fault == nil || last.Fault.Detail != "1 records dropped, seqs 6..6 (max_records)" {
		t.Fatalf("last record %+v, want the drop notice for 6..6", last)
	}

	// A notice that is not a valid record is refused at Open.
	bad := opts
	bad.DropNotice = func(DropRange) protocol.Record { return protocol.Record{Kind: protocol.KindFault} }
	if _, err := Open(bg, filepath.Join(t.TempDir(), "x.db"), bad); err == nil {
		t.Fatal("Open accepted a DropNotice that builds invalid records")
	}
}

func TestConcurrentAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{FlushRecords: 16, FlushInterval: 5 * time.Millisecond})
	const workers, each = 8, 150
	seqs := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq, err := o.Append(bg, reading(fmt.Sprintf("w%d", w), float64(i), t0))
				if err != nil {
					t.Error(err)
					return
				}
				seqs[w] = append(seqs[w], seq)
				if i%50 == 0 {
					if err := o.Flush(bg); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	// Readers and ackers run alongside.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := o.Pending(bg, 0, 10); err != nil {
				t.Error(err)
				return
			}
			_ = o.Stats()
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	mustClose(t, o)

	var got []uint64
	for w := range workers {
		if !slices.IsSorted(seqs[w]) {
			t.Errorf("worker %d got decreasing seqs", w)
		}
		got = append(got, seqs[w]...)
	}
	slices.Sort(got)
	if !slices.Equal(got, span(1, workers*each)) {
		t.Fatalf("assigned seqs are not exactly 1..%d", workers*each)
	}
	o = openT(t, path, Options{})
	recs := all(t, o)
	if !slices.Equal(seqsOf(recs), span(1, workers*each)) {
		t.Fatalf("stored seqs are not 1..%d", workers*each)
	}
	// Each worker's values are stored in its order.
	next := map[string]float64{}
	for _, r := range recs {
		if *r.Value != next[r.Sensor] {
			t.Fatalf("%s: seq %d has value %v, want %v", r.Sensor, r.Seq, *r.Value, next[r.Sensor])
		}
		next[r.Sensor]++
	}
}

func TestAppendSync(t *testing.T) {
	o := openT(t, filepath.Join(t.TempDir(), "outbox.db"), Options{FlushInterval: time.Hour})
	mustAppend(t, o, reading("s", 1, t0))
	seq, err := o.AppendSync(bg, alert("s", "low", protocol.AlertRaised, t0))
	if err != nil || seq != 2 {
		t.Fatalf("AppendSync = %d, %v", seq, err)
	}
	// The alert and everything appended before it are committed.
	if got := seqsOf(all(t, o)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("after AppendSync: %v, want [1 2]", got)
	}
	if st := o.Stats(); st.Buffered != 0 || st.CommittedSeq != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{})
	if _, err := o.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	mustClose(t, o)
	_, err := Open(bg, path, Options{})
	if !errors.Is(err, sqlitex.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer outbox: %v, want ErrSchemaTooNew", err)
	}
}

// TestCleanCloseReportsNoCrash: a clean Close leaves nothing to report as
// possibly lost, with or without records and reservations in between.
func TestCleanCloseReportsNoCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	for round := range 3 {
		o, err := Open(bg, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if un := o.Stats().Unreported; un.Count != 0 {
			t.Fatalf("round %d: reopened after a clean close, unreported %+v", round, un)
		}
		for i := range 300 * round {
			seq := mustAppend(t, o, reading("s", float64(i), t0))
			if i%2 == 0 {
				if err := o.Ack(bg, seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := o.Close(bg); err != nil {
			t.Fatal(err)
		}
	}
}
