package memtrim

import (
	"runtime"
	"runtime/debug"
	"testing"
)

var sink [][]byte

func TestCheckTrimsAfterBurstOnly(t *testing.T) {
	tr := New()
	debug.FreeOSMemory()
	tr.Reclaimable() // sync with the collection above
	if tr.Check() {
		t.Fatal("trimmed with nothing to reclaim")
	}

	// A burst: 64 MiB allocated and dropped, no collection since (GOGC off
	// for the burst so the runtime does not collect it by itself).
	old := debug.SetGCPercent(-1)
	for range 1024 {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	debug.SetGCPercent(old)
	if _, r, _ := tr.Reclaimable(); r < 32<<20 {
		t.Fatalf("reclaimable %d after a 64 MiB burst, want ≥ 32 MiB", r)
	}
	// The call above saw no collection since the previous one: quiet.
	if !tr.Check() {
		t.Fatal("did not trim after a quiet burst")
	}
	_, r, _ := tr.Reclaimable()
	if r > 16<<20 {
		t.Errorf("reclaimable %d after the trim, want < 16 MiB", r)
	}
	if tr.Check() {
		t.Error("trimmed again with nothing new to reclaim")
	}
	if tr.Trims() != 1 {
		t.Errorf("Trims() = %d, want 1", tr.Trims())
	}
}

func TestCheckLeavesBusyProcessAlone(t *testing.T) {
	tr := New()
	old := debug.SetGCPercent(-1)
	for range 1024 {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	debug.SetGCPercent(old)
	runtime.GC() // a collection of its own: the process is busy
	for range 1024 {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	if tr.Check() {
		t.Fatal("trimmed although the process allocated 64 MiB since the last look")
	}
}

// A collection between two looks (the runtime's periodic one, or a little
// garbage) must not postpone the trim of an otherwise idle process.
func TestCheckTrimsAfterCollectionWhileQuiet(t *testing.T) {
	tr := New()
	runtime.GC()
	old := debug.SetGCPercent(-1)
	for range 1024 {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	debug.SetGCPercent(old)
	if tr.Check() {
		t.Fatal("trimmed in the look that saw the burst's allocation")
	}
	for range 16 {
		sink = append(sink, make([]byte, 1<<10))
	}
	sink = nil
	runtime.GC()
	if !tr.Check() {
		t.Fatal("a collection since the last look postponed the trim of a quiet process")
	}
}
