// Package memtrim returns memory the Go heap no longer needs to the kernel
// once a process has gone quiet. After a burst (a connection storm, a
// backlog) the garbage it left and the GC's headroom stay mapped until the
// next collection, which an idle broker may not run for minutes; and what a
// collection frees below the heap goal is never returned. A Trimmer runs one
// collection plus a scavenge (debug.FreeOSMemory) when the process allocated
// little since its last look (less than half of what it would reclaim) and
// the heap holds enough to reclaim, so an idle hub's resident memory follows
// its live data. A busy process is left alone: it would fill the memory
// again before long. A collection between two looks (the runtime's periodic
// one, a few pings' worth of garbage) does not make a process busy.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Trimmer decides when to trim. The zero value is not usable; use New. Check
// and Run are for one goroutine; Trims may be called from any.
type Trimmer struct {
	// MinBytes and MinFraction: trim only when the reclaimable memory is at
	// least MinBytes and at least MinFraction of the live heap.
	MinBytes    uint64
	MinFraction float64

	samples    []metrics.Sample
	lastAllocs uint64
	trims      atomic.Uint64
}

const (
	sAllocs = iota
	sLive
	sObjects
	sFree
)

// New returns a Trimmer with the hub's thresholds: 8 MiB and a quarter of
// the live heap.
func New() *Trimmer {
	t := &Trimmer{MinBytes: 8 << 20, MinFraction: 0.25, samples: []metrics.Sample{
		sAllocs:  {Name: "/gc/heap/allocs:bytes"},
		sLive:    {Name: "/gc/heap/live:bytes"},
		sObjects: {Name: "/memory/classes/heap/objects:bytes"},
		sFree:    {Name: "/memory/classes/heap/free:bytes"},
	}}
	metrics.Read(t.samples)
	t.lastAllocs = t.samples[sAllocs].Value.Uint64()
	return t
}

// Reclaimable reads the runtime's figures: the heap marked live by the last
// collection, and what a collection plus a scavenge would give back (objects
// allocated since that are not live, and free heap not yet returned). quiet
// is whether the process allocated less than half of reclaimable since the
// previous call.
func (t *Trimmer) Reclaimable() (live, reclaimable uint64, quiet bool) {
	metrics.Read(t.samples)
	allocs := t.samples[sAllocs].Value.Uint64()
	allocated := allocs - t.lastAllocs
	t.lastAllocs = allocs
	live = t.samples[sLive].Value.Uint64()
	objects := t.samples[sObjects].Value.Uint64()
	if objects > live {
		reclaimable = objects - live
	}
	reclaimable += t.samples[sFree].Value.Uint64()
	return live, reclaimable, allocated < reclaimable/2
}

// Check trims if the process was quiet since the previous Check and there is
// enough to reclaim; it reports whether it trimmed.
func (t *Trimmer) Check() bool {
	live, reclaimable, quiet := t.Reclaimable()
	if !quiet || reclaimable < t.MinBytes || float64(reclaimable) < t.MinFraction*float64(live) {
		return false
	}
	debug.FreeOSMemory()
	t.trims.Add(1)
	return true
}

// Trims is how many times Check trimmed.
func (t *Trimmer) Trims() uint64 { return t.trims.Load() }

// Run calls Check every interval until ctx ends.
func (t *Trimmer) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Check()
		}
	}
}
