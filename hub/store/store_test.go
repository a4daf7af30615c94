package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/sqlitex"
)

func open(t testing.TB, opts Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "hub.db"), opts)
}

func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func readings(from, n int, t0 int64) []protocol.Record {
	out := make([]protocol.Record, n)
	for i := range out {
		v := float64(from + i)
		out[i] = protocol.Record{Seq: uint64(from + i), Kind: protocol.KindReading, Time: t0 + int64(i)*1000, Sensor: "tank", Value: &v, Unit: "C"}
	}
	return out
}

func TestAppendIdempotentAndConcurrent(t *testing.T) {
	s := open(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for d := 0; d < 8; d++ {
		wg.Add(1)
		go func(d int) {
			defer wg.Done()
			dev := fmt.Sprintf("gw-%d", d)
			for i := 1; i <= 100; i += 10 {
				// Every batch twice: at-least-once delivery.
				for k := 0; k < 2; k++ {
					if err := s.AppendLog(ctx, dev, readings(i, 10, 1_700_000_000_000)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}(d)
	}
	wg.Wait()
	for d := 0; d < 8; d++ {
		seqs, err := s.Seqs(ctx, fmt.Sprintf("gw-%d", d))
		if err != nil || len(seqs) != 100 || seqs[0] != 1 || seqs[99] != 100 {
			t.Fatalf("gw-%d: %d seqs (%v)", d, len(seqs), err)
		}
	}
	if s.Rows.Load() != 800 {
		t.Fatalf("rows inserted = %d, want 800", s.Rows.Load())
	}
	if n, dups, err := s.Counts(ctx); err != nil || n != 800 || dups != 800 {
		t.Fatalf("counts = %d stored, %d duplicates, %v; want 800 and 800", n, dups, err)
	}
	if c := s.Commits.Load(); c >= 160 {
		t.Logf("commits = %d for 160 batches (no grouping happened this run)", c)
	}
	d, err := s.Device(ctx, "gw-3")
	if err != nil || d.LastSeq != 100 {
		t.Fatalf("device = %+v, %v", d, err)
	}
}

func TestLogAndReadings(t *testing.T) {
	s := open(t, Options{})
	ctx := context.Background()
	t0 := int64(1_700_000_000_000)
	if err := s.AppendLog(ctx, "gw", readings(1, 600, t0)); err != nil {
		t.Fatal(err)
	}
	alert := protocol.Record{Seq: 601, Kind: protocol.KindAlert, Time: t0 + 601000, Sensor: "tank",
		Alert: &protocol.Alert{Rule: "low", State: protocol.AlertRaised, Value: 9}}
	if err := s.AppendLog(ctx, "gw", []protocol.Record{alert}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Log(ctx, "gw", 595, 100)
	if err != nil || len(recs) != 6 {
		t.Fatalf("log since 595: %d records, %v", len(recs), err)
	}
	d, _ := s.Device(ctx, "gw")
	if d.OpenAlerts != 1 {
		t.Fatalf("open alerts = %d", d.OpenAlerts)
	}
	ps, err := s.Readings(ctx, "gw", "tank", t0, t0+600_000, 60)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) < 59 || len(ps) > 61 {
		t.Fatalf("downsampled to %d points, want ≈60", len(ps))
	}
	n := 0
	for _, p := range ps {
		n += p.N
		if p.Min > p.Value || p.Value > p.Max {
			t.Fatalf("point %+v: avg outside min/max", p)
		}
	}
	if n != 600 {
		t.Fatalf("points cover %d readings, want 600", n)
	}
}

func TestRetention(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := now
	s := open(t, Options{RetainAge: time.Hour, RetainRows: 50, Now: func() time.Time { return clock }})
	ctx := context.Background()
	clock = now.Add(-2 * time.Hour)
	if err := s.AppendLog(ctx, "gw", readings(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	clock = now
	if err := s.AppendLog(ctx, "gw", readings(11, 100, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	seqs, _ := s.Seqs(ctx, "gw")
	if len(seqs) != 50 || seqs[0] != 61 {
		t.Fatalf("after retention: %d seqs from %v", len(seqs), seqs[:1])
	}
	d, _ := s.Device(ctx, "gw")
	if d.LastSeq != 110 {
		t.Fatalf("last_seq must survive retention: %d", d.LastSeq)
	}
}

func TestCloseDrainsAndRefuses(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), filepath.Join(dir, "hub.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = s.SaveTransition(ctx, Transition{Device: "gw", TimeMS: 5, State: "online", Reason: "connected", Epoch: 1}, 0, "", 0)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(ctx, "gw", readings(1, 1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	s, err = Open(ctx, filepath.Join(dir, "hub.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	h, err := s.Presence(ctx, "gw", 10)
	if err != nil || len(h) != 1 {
		t.Fatalf("queued transition lost on close: %v %v", h, err)
	}
}

// BenchmarkIngest measures rows/s through the group-commit writer with many
// concurrent devices, each waiting for its commit like the broker hook does.
func BenchmarkIngest(b *testing.B) {
	for _, devices := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			s := open(b, Options{})
			ctx := context.Background()
			var wg sync.WaitGroup
			per := b.N/devices + 1
			b.ResetTimer()
			for d := 0; d < devices; d++ {
				wg.Add(1)
				go func(d int) {
					defer wg.Done()
					dev := fmt.Sprintf("gw-%d", d)
					for i := 1; i <= per; i++ {
						if err := s.AppendLog(ctx, dev, readings(i, 1, int64(i)*1000)); err != nil {
							b.Error(err)
							return
						}
					}
				}(d)
			}
			wg.Wait()
			// Everything moved into the indexed log, and counted: the
			// figure includes the move, not only the intake.
			if n, _, err := s.Counts(ctx); err != nil || n != int64(per*devices) {
				b.Fatalf("stored %d of %d: %v", n, per*devices, err)
			}
			b.StopTimer()
			b.ReportMetric(float64(per*devices)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(per*devices)/float64(s.Commits.Load()), "rows/commit")
		})
	}
}

// BenchmarkIngestAsync measures rows/s of QoS 0 log batches: queued, never
// waited for, committed in the writer's large groups, then counted.
func BenchmarkIngestAsync(b *testing.B) {
	s := open(b, Options{})
	ctx := context.Background()
	const devices = 10
	per := b.N/devices + 1
	b.ResetTimer()
	for i := 1; i <= per; i++ {
		for d := range devices {
			if err := s.AppendLogAsync(ctx, fmt.Sprintf("gw-%d", d), readings(i, 1, int64(i)*1000)); err != nil {
				b.Fatal(err)
			}
		}
	}
	// A waited-for append after them: the writer commits in order.
	if err := s.AppendLog(ctx, "gw-barrier", readings(1, 1, 1000)); err != nil {
		b.Fatal(err)
	}
	if n, _, err := s.Counts(ctx); err != nil || n != int64(per*devices+1) {
		b.Fatalf("stored %d of %d: %v", n, per*devices+1, err)
	}
	b.StopTimer()
	b.ReportMetric(float64(per*devices)/b.Elapsed().Seconds(), "rows/s")
}

func TestAppendLogAsyncIsCommittedByClose(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(dir, "hub.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i += 10 {
		if err := s.AppendLogAsync(ctx, "gw", readings(i, 10, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, filepath.Join(dir, "hub.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if seqs, _ := s.Seqs(ctx, "gw"); len(seqs) != 50 {
		t.Fatalf("queued records lost at close: %d of 50", len(seqs))
	}
}

// A redelivered alert record (at-least-once) never reopens an alert that a
// later record cleared, whether the copy lands in the same move of the
// intake or in a later one.
func TestRedeliveredAlertDoesNotReopen(t *testing.T) {
	s := open(t, Options{})
	ctx := context.Background()
	t0 := int64(1_700_000_000_000)
	raised := protocol.Record{Seq: 5, Kind: protocol.KindAlert, Time: t0, Sensor: "tank",
		Alert: &protocol.Alert{Rule: "low", State: protocol.AlertRaised, Value: 9}}
	cleared := protocol.Record{Seq: 6, Kind: protocol.KindAlert, Time: t0 + 1000, Sensor: "tank",
		Alert: &protocol.Alert{Rule: "low", State: protocol.AlertCleared, Value: 11}}
	// Same move: raised, cleared, raised again.
	for _, b := range [][]protocol.Record{{raised, cleared}, {raised}} {
		if err := s.AppendLog(ctx, "gw", b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		as, _, err := s.Alerts(ctx, AlertQuery{Device: "gw"})
		if err != nil || len(as) != 1 || as[0].State != "cleared" {
			t.Fatalf("%s: alerts %+v, %v; want one, cleared", when, as, err)
		}
	}
	check("redelivered in the same move")
	// A later move.
	if err := s.AppendLog(ctx, "gw", []protocol.Record{raised}); err != nil {
		t.Fatal(err)
	}
	check("redelivered after the move")
	if _, dups, _ := s.Counts(ctx); dups != 2 {
		t.Fatalf("duplicates = %d, want 2", dups)
	}
}

// Records committed to the intake but not moved when the hub died (kill -9)
// are in the log after the restart.
func TestIntakeSurvivesARestart(t *testing.T) {
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
	// What a crash between a commit and the next move leaves: rows in the
	// intake (written here with a plain connection, no store running).
	db, err := sql.Open(sqlitex.DriverName, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO log_intake(device_id, seq, kind, t_ms, sensor, value, body, recv_ms)
		SELECT device_id, seq + 3, kind, t_ms, sensor, value, replace(body, '"seq":' || seq, '"seq":' || (seq + 3)), recv_ms FROM log`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	if seqs, err := s.Seqs(ctx, "gw"); err != nil || len(seqs) != 6 || seqs[5] != 6 {
		t.Fatalf("after the restart: seqs %v, %v; want 1..6", seqs, err)
	}
}
