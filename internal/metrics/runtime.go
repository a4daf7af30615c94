package metrics

import "runtime/metrics"

// goRuntime maps the runtime/metrics samples the registry exports to their
// Prometheus names.
var goRuntime = []struct{ sample, name, help string }{
	{"/sched/goroutines:goroutines", "go_goroutines", "Goroutines that currently exist."},
	{"/memory/classes/heap/objects:bytes", "go_heap_objects_bytes", "Heap memory occupied by live and not yet swept objects."},
	{"/memory/classes/heap/unused:bytes", "go_heap_unused_bytes", "Heap memory reserved for objects but not in use (fragmentation)."},
	{"/memory/classes/heap/free:bytes", "go_heap_free_bytes", "Heap memory free and not yet returned to the OS."},
	{"/memory/classes/heap/released:bytes", "go_heap_released_bytes", "Heap memory returned to the OS."},
	{"/memory/classes/heap/stacks:bytes", "go_stack_bytes", "Memory allocated for goroutine stacks."},
	{"/memory/classes/total:bytes", "go_memory_mapped_bytes", "All memory mapped by the Go runtime."},
	{"/gc/heap/goal:bytes", "go_gc_heap_goal_bytes", "Heap size target of the current GC cycle."},
}

// GoRuntime registers gauges for the Go runtime's goroutines and memory
// classes, read with runtime/metrics (no stop-the-world) at scrape time.
func (r *Registry) GoRuntime() {
	for _, m := range goRuntime {
		sample := m.sample
		r.GaugeFunc(m.name, m.help, "", func() map[string]float64 {
			s := []metrics.Sample{{Name: sample}}
			metrics.Read(s)
			if s[0].Value.Kind() != metrics.KindUint64 {
				return nil
			}
			return map[string]float64{"": float64(s[0].Value.Uint64())}
		})
	}
	r.CounterFunc("go_gc_cycles_total", "Completed GC cycles.", func() float64 {
		s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
		metrics.Read(s)
		return float64(s[0].Value.Uint64())
	})
}
