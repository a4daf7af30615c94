// Package metrics is a small Prometheus text-format registry: counters,
// labelled counters, gauges read at scrape time and histograms. It avoids the
// weight of the full client library for the handful of series Outpost has.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry holds metrics in registration order.
type Registry struct {
	mu      sync.Mutex
	metrics []metric
}

type metric interface {
	write(w io.Writer)
}

// Counter is a monotonically increasing value.
type Counter struct {
	name, help string
	v          atomic.Uint64
}

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current value.
func (c *Counter) Value() uint64 { return c.v.Load() }

func (c *Counter) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", c.name, c.help, c.name, c.name, c.v.Load())
}

// CounterVec is a counter with one label.
type CounterVec struct {
	name, help, label string
	m                 sync.Map // label value → *atomic.Uint64
}

// Inc adds one to the series with label value lv.
func (c *CounterVec) Inc(lv string) {
	v, ok := c.m.Load(lv)
	if !ok {
		v, _ = c.m.LoadOrStore(lv, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// Value returns the series' value.
func (c *CounterVec) Value(lv string) uint64 {
	if v, ok := c.m.Load(lv); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

func (c *CounterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.name, c.help, c.name)
	var keys []string
	c.m.Range(func(k, _ any) bool { keys = append(keys, k.(string)); return true })
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := c.m.Load(k)
		fmt.Fprintf(w, "%s{%s=%q} %d\n", c.name, c.label, k, v.(*atomic.Uint64).Load())
	}
}

type gaugeFunc struct {
	name, help, label string
	fn                func() map[string]float64
}

func (g *gaugeFunc) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", g.name, g.help, g.name)
	vals := g.fn()
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if g.label == "" {
			fmt.Fprintf(w, "%s %g\n", g.name, vals[k])
		} else {
			fmt.Fprintf(w, "%s{%s=%q} %g\n", g.name, g.label, k, vals[k])
		}
	}
}

// counterFunc is a counter whose value is read at scrape time.
type counterFunc struct {
	name, help string
	fn         func() float64
}

func (c *counterFunc) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %g\n", c.name, c.help, c.name, c.name, c.fn())
}

// Histogram counts observations into fixed buckets.
type Histogram struct {
	name, help string
	bounds     []float64
	mu         sync.Mutex
	counts     []uint64
	sum        float64
	n          uint64
}

// Observe records v.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v)
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.n++
	h.mu.Unlock()
}

func (h *Histogram) write(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", h.name, b, cum)
	}
	cum += h.counts[len(h.bounds)]
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", h.name, cum, h.name, h.sum, h.name, h.n)
}

func (r *Registry) add(m metric) {
	r.mu.Lock()
	r.metrics = append(r.metrics, m)
	r.mu.Unlock()
}

// Counter registers a counter.
func (r *Registry) Counter(name, help string) *Counter {
	c := &Counter{name: name, help: help}
	r.add(c)
	return c
}

// CounterVec registers a counter with one label.
func (r *Registry) CounterVec(name, help, label string) *CounterVec {
	c := &CounterVec{name: name, help: help, label: label}
	r.add(c)
	return c
}

// GaugeFunc registers gauges computed at scrape time: fn returns label value →
// value (label "" means one unlabelled series under key "").
func (r *Registry) GaugeFunc(name, help, label string, fn func() map[string]float64) {
	r.add(&gaugeFunc{name: name, help: help, label: label, fn: fn})
}

// CounterFunc registers a counter read from fn at scrape time (fn must
// never decrease).
func (r *Registry) CounterFunc(name, help string, fn func() float64) {
	r.add(&counterFunc{name: name, help: help, fn: fn})
}

// Histogram registers a histogram with the given upper bounds (ascending).
func (r *Registry) Histogram(name, help string, bounds []float64) *Histogram {
	h := &Histogram{name: name, help: help, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
	r.add(h)
	return h
}

// Write writes every metric in the Prometheus text format.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	ms := append([]metric(nil), r.metrics...)
	r.mu.Unlock()
	for _, m := range ms {
		m.write(w)
	}
}

// ExpBuckets returns n bounds starting at start, each factor times the previous.
func ExpBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start * math.Pow(factor, float64(i))
	}
	return b
}

// Text renders the registry (tests).
func (r *Registry) Text() string {
	var sb strings.Builder
	r.Write(&sb)
	return sb.String()
}
