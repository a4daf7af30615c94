package outbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/sqlitex"
)

// procIO reads this process's I/O counters from /proc/self/io:
// write_bytes is what reached (or will reach) the block layer, wchar what
// was passed to write(2) and friends.
func procIO(t testing.TB) (writeBytes, wchar int64, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := bytes.Cut(sc.Bytes(), []byte(": "))
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			continue
		}
		switch string(k) {
		case "write_bytes":
			writeBytes = n
		case "wchar":
			wchar = n
		}
	}
	return writeBytes, wchar, true
}

// ioCost is the disk cost of storing readings.
type ioCost struct {
	diskPerReading  float64 // write_bytes / reading
	wcharPerReading float64 // wchar / reading
	ok              bool
}

// measureAppend opens a fresh outbox in dir, appends n readings, flushing
// after every group readings (0: the default grouping, FlushRecords), closes
// it (so the final checkpoint is counted) and returns the bytes written per
// reading. Opening and creating the schema are not counted.
func measureAppend(tb testing.TB, dir string, n, group int, opts Options) ioCost {
	tb.Helper()
	o, err := Open(bg, filepath.Join(dir, "outbox.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	wb0, wc0, ok := procIO(tb)
	for i := range n {
		// Realistic names and values: 4 sensors, 0.01 resolution, sampled
		// just before they are appended.
		rec := reading("tank"+strconv.Itoa(i%4)+".temp", float64(2000+i%500)/100, time.Now().UnixMilli())
		if _, err := o.Append(bg, rec); err != nil {
			tb.Fatal(err)
		}
		if group > 0 && (i+1)%group == 0 {
			if err := o.Flush(bg); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := o.Close(bg); err != nil {
		tb.Fatal(err)
	}
	wb1, wc1, _ := procIO(tb)
	return ioCost{
		diskPerReading:  float64(wb1-wb0) / float64(n),
		wcharPerReading: float64(wc1-wc0) / float64(n),
		ok:              ok && wb1 > wb0,
	}
}

// TestBytesPerReading measures what 10,000 readings appended with the default
// grouping cost on disk, and holds it to the target of ≤ 100 bytes per
// reading. It is skipped where /proc/self/io does not report block writes
// (tmpfs, non-Linux).
func TestBytesPerReading(t *testing.T) {
	if testing.Short() {
		t.Skip("measures disk writes; skipped in -short")
	}
	c := measureAppend(t, t.TempDir(), 10_000, 0, Options{})
	if !c.ok {
		t.Skip("/proc/self/io reports no block writes here")
	}
	t.Logf("default grouping (%d per commit): %.1f bytes written to disk per reading (write_bytes), %.1f passed to write(2) (wchar)",
		DefaultFlushRecords, c.diskPerReading, c.wcharPerReading)
	if c.diskPerReading > 100 {
		t.Errorf("%.1f bytes written per reading, target ≤ 100", c.diskPerReading)
	}
}

// BenchmarkAppendFlush appends readings and commits them in groups of
// "group" (the number of readings one FlushInterval collects: 4 sensors at
// 1 Hz → 4; a backlog burst → 256), and reports the disk bytes per reading.
// The sync=normal and page=4096 variants show the alternatives the outbox
// does not use (see the package comment and the pageSize constant).
//
//	go test -run '^$' -bench AppendFlush -benchtime 10000x ./gateway/outbox/
func BenchmarkAppendFlush(b *testing.B) {
	normal := func(o *sqlitex.Options) { o.FullSync = false }
	page4k := func(o *sqlitex.Options) { o.Pragmas[0] = "page_size(4096)" }
	for _, bc := range []struct {
		name string
		tune func(*sqlitex.Options)
	}{
		{"default", nil},
		{"sync=normal", normal},
		{"page=4096", page4k},
	} {
		for _, group := range []int{1, 4, 32, DefaultFlushRecords} {
			b.Run(fmt.Sprintf("%s/group=%d", bc.name, group), func(b *testing.B) {
				b.ReportAllocs()
				dir := b.TempDir()
				start := time.Now()
				c := measureAppend(b, dir, b.N, group, Options{FlushInterval: time.Hour, tune: bc.tune})
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "readings/s")
				if c.ok {
					b.ReportMetric(c.diskPerReading, "disk-B/reading")
				}
				b.ReportMetric(c.wcharPerReading, "wchar-B/reading")
			})
		}
	}
}

// BenchmarkAppend measures Append alone (no disk write in the loop except
// the commits every FlushRecords).
func BenchmarkAppend(b *testing.B) {
	o := openT(b, filepath.Join(b.TempDir(), "outbox.db"), Options{FlushInterval: time.Hour})
	rec := reading("tank0.temp", 21.5, t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Append(bg, rec); err != nil {
			b.Fatal(err)
		}
	}
}
