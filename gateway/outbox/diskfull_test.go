package outbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory, or skips
// the test when that is not permitted.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull fills a real file system: the failing append reports a clear
// error wrapping ErrDiskFull, stored records stay intact and readable, the
// buffered ones are kept, and once space is freed everything is stored with
// gapless seqs.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	dir := mountTmpfs(t, "512k")
	// Space to free later.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "outbox.db")
	o, err := Open(bg, path, Options{FlushInterval: time.Hour, FlushRecords: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = o.Close(bg) }() // closed below; this is for early failures

	var fullErr error
	var accepted uint64
	for i := range 1_000_000 {
		seq, err := o.Append(bg, reading("tank0.temp", float64(i+1), time.Now().UnixMilli()))
		if err != nil {
			fullErr = err
			break
		}
		accepted = seq
	}
	if fullErr == nil {
		t.Fatal("a 512 KiB file system never filled up")
	}
	if !errors.Is(fullErr, ErrDiskFull) || !strings.HasPrefix(fullErr.Error(), "outbox: disk full") {
		t.Fatalf("Append on a full disk: %q, want an error starting with 'outbox: disk full' wrapping ErrDiskFull", fullErr)
	}
	st := o.Stats()
	t.Logf("disk full after %d records: %d committed, %d buffered; error: %v", accepted, st.CommittedSeq, st.Buffered, fullErr)
	if st.LastSeq != accepted || st.CommittedSeq+uint64(st.Buffered) != accepted || !errors.Is(st.FlushErr, ErrDiskFull) {
		t.Fatalf("stats %+v: want last seq %d = committed + buffered, FlushErr disk full", st, accepted)
	}
	// Still full: the next Append fails too and does not take a seq.
	if _, err := o.Append(bg, reading("tank0.temp", 0, time.Now().UnixMilli())); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second Append on a full disk: %v", err)
	}
	if err := o.Flush(bg); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Flush on a full disk: %v", err)
	}

	// The stored records are intact and readable, now, on a full disk.
	recs := all(t, o)
	if !slices.Equal(seqsOf(recs), span(1, st.CommittedSeq)) {
		t.Fatalf("on a full disk: stored seqs are not 1..%d", st.CommittedSeq)
	}
	for _, r := range recs {
		if *r.Value != float64(r.Seq) {
			t.Fatalf("seq %d holds %v", r.Seq, *r.Value)
		}
	}

	// Free space: the buffered records are stored, in order, and appends
	// continue with the next seq.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	seq, err := o.Append(bg, reading("tank0.temp", float64(accepted+1), time.Now().UnixMilli()))
	if err != nil || seq != accepted+1 {
		t.Fatalf("Append after freeing space = %d, %v; want %d", seq, err, accepted+1)
	}
	if err := o.Close(bg); err != nil {
		t.Fatalf("Close after freeing space: %v", err)
	}
	o, err = Open(bg, path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer func() { _ = o.Close(bg) }()
	recs = all(t, o)
	if !slices.Equal(seqsOf(recs), span(1, accepted+1)) {
		t.Fatalf("after freeing space and reopening: %d records, want seqs 1..%d", len(recs), accepted+1)
	}
	for _, r := range recs {
		if *r.Value != float64(r.Seq) {
			t.Fatalf("seq %d holds %v", r.Seq, *r.Value)
		}
	}
	var ok string
	if err := o.db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check = %q, %v", ok, err)
	}
}

// An outbox whose disk is full at Open (it reserves seqs there, and applies
// the bounds) still opens, so that the uplink can publish what is stored;
// Append reports the full disk until a commit succeeds. Other errors still
// fail Open. (On a real full disk a small transaction often still fits in
// the WAL's last block: the failure is injected.)
func TestOpenOnFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openT(t, path, Options{})
	for i := range 10 {
		mustAppend(t, o, reading("s", float64(i), t0))
	}
	mustClose(t, o)

	full := true
	opts := Options{FlushInterval: time.Hour, beforeCommit: func() error {
		if full {
			return fmt.Errorf("injected: %w", ErrDiskFull)
		}
		return nil
	}}
	o = openT(t, path, opts)
	if st := o.Stats(); !errors.Is(st.FlushErr, ErrDiskFull) || st.Depth != 10 || st.LastSeq != 10 {
		t.Fatalf("stats after Open on a full disk: %+v", st)
	}
	if recs, err := o.Peek(bg, 0, 0); err != nil || !slices.Equal(seqsOf(recs), span(1, 10)) {
		t.Fatalf("Peek on a full disk = %v, %v", seqsOf(recs), err)
	}
	if _, err := o.Append(bg, reading("s", 1, t0)); !errors.Is(err, ErrDiskFull) || !strings.HasPrefix(err.Error(), "outbox: disk full") {
		t.Fatalf("Append on a full disk: %v", err)
	}
	o.wmu.Lock()
	full = false
	o.wmu.Unlock()
	if seq, err := o.Append(bg, reading("s", 1, t0)); err != nil || seq != 11 {
		t.Fatalf("Append once the disk has room = %d, %v; want 11", seq, err)
	}

	opts.beforeCommit = func() error { return errors.New("injected") }
	if o, err := Open(bg, filepath.Join(t.TempDir(), "x.db"), opts); err == nil {
		_ = o.Close(bg)
		t.Fatal("Open succeeded although its commit failed (not for a full disk)")
	}
}
