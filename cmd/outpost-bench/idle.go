package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-iot/outpost/internal/loadgen"
)

type idleOpts struct {
	brokers     []string
	counts      []int
	concurrency int
	keepalive   uint16
	settle      time.Duration // longest wait for RSS to settle
	wait        time.Duration // idle time before sampling
}

type idleRun struct {
	n           int
	before      int64 // RSS bytes
	after       int64
	connectTime time.Duration
	// The hub's Go runtime gauges (/metrics) before and after, in bytes
	// (goroutines: a count); nil for Mosquitto.
	rtBefore, rtAfter map[string]float64
	err               error
}

// hubRuntime are the hub's /metrics gauges the idle report breaks RSS into.
var hubRuntime = []struct{ metric, label string }{
	{"go_goroutines", "goroutines"},
	{"go_stack_bytes", "stacks KB"},
	{"go_heap_objects_bytes", "heap objects KB"},
	{"go_heap_unused_bytes", "heap unused KB"},
	{"go_heap_free_bytes", "heap free KB"},
}

func (b *bench) hubRuntime(br *broker) (map[string]float64, error) {
	names := make([]string, len(hubRuntime))
	for i, g := range hubRuntime {
		names[i] = g.metric
	}
	return b.metrics(br, names...)
}

// runtimePerConn is the growth of a hub runtime gauge per connection (KB, or
// a count for goroutines).
func (r idleRun) runtimePerConn(metric string) float64 {
	d := (r.rtAfter[metric] - r.rtBefore[metric]) / float64(r.n)
	if metric == "go_goroutines" {
		return d
	}
	return d / 1024
}

func (r idleRun) perConnKB() float64 {
	return float64(r.after-r.before) / float64(r.n) / 1024
}

type idleSummary struct {
	opts idleOpts
	runs map[string]idleRun // broker/n
}

func idleKey(kind string, n int) string { return fmt.Sprintf("%s/%d", kind, n) }

func (b *bench) idle(ctx context.Context, o idleOpts) *idleSummary {
	s := &idleSummary{opts: o, runs: map[string]idleRun{}}
	for _, n := range o.counts {
		for _, kind := range o.brokers {
			if ctx.Err() != nil {
				return s
			}
			r := b.idleOnce(ctx, kind, n, o)
			s.runs[idleKey(kind, n)] = r
			if r.err != nil {
				b.progress("idle %s n=%d: FAILED: %v", kind, n, r.err)
			} else {
				b.progress("idle %s n=%d: RSS %.1f → %.1f MiB: %.1f KB per connection (connected in %v)",
					kind, n, mib(r.before), mib(r.after), r.perConnKB(), r.connectTime.Round(time.Millisecond))
				if r.rtAfter != nil {
					b.progress("idle %s n=%d: per connection %.2f goroutines, stacks %.1f KB, heap objects %.1f KB, unused %.1f KB, free %.1f KB",
						kind, n, r.runtimePerConn("go_goroutines"), r.runtimePerConn("go_stack_bytes"),
						r.runtimePerConn("go_heap_objects_bytes"), r.runtimePerConn("go_heap_unused_bytes"), r.runtimePerConn("go_heap_free_bytes"))
				}
			}
		}
	}
	return s
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// idleOnce opens n idle TLS connections to a fresh broker and measures how
// much its resident memory grew per connection once it settled.
func (b *bench) idleOnce(ctx context.Context, kind string, n int, o idleOpts) idleRun {
	r := idleRun{n: n}
	br, err := b.startBroker(ctx, kind)
	if err != nil {
		r.err = err
		return r
	}
	defer br.kill()
	time.Sleep(500 * time.Millisecond)
	if r.before, err = settledRSS(ctx, br.pid(), 5*time.Second); err != nil {
		r.err = err
		return r
	}
	if kind == kindHub {
		if r.rtBefore, err = b.hubRuntime(br); err != nil {
			r.err = err
			return r
		}
	}
	clients := make([]*loadgen.Client, n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Raw.Close()
			}
		}
	}()
	start := time.Now()
	var done atomic.Int64
	errc := make(chan error, 1)
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("idle-%d", i)
			tok, err := br.token(id, false)
			if err == nil {
				clients[i], err = loadgen.Dial(ctx, loadgen.DialOptions{Addr: br.addr, TLS: b.tlsConfig(), ClientID: id, Username: id,
					Password: tok, KeepAlive: o.keepalive, ReceiveMaximum: 8, Timeout: 30 * time.Second})
			}
			if err != nil {
				select {
				case errc <- fmt.Errorf("connection %d: %w", i, err):
				default:
				}
				return
			}
			if k := done.Add(1); k%2000 == 0 {
				b.progress("idle %s: %d/%d connected", kind, k, n)
			}
		}()
		select {
		case err := <-errc:
			r.err = err
		default:
		}
		if r.err != nil {
			break
		}
	}
	wg.Wait()
	r.connectTime = time.Since(start)
	select {
	case err := <-errc:
		r.err = err
	default:
	}
	if r.err == nil && int(done.Load()) != n {
		r.err = fmt.Errorf("%d of %d connected", done.Load(), n)
	}
	if r.err != nil {
		return r
	}
	// Idle devices stay idle for hours: sample once the broker had time to
	// settle after the connection storm (the hub trims its heap when quiet).
	select {
	case <-ctx.Done():
		r.err = ctx.Err()
		return r
	case <-time.After(o.wait):
	}
	if r.after, err = settledRSS(ctx, br.pid(), o.settle); err != nil {
		r.err = err
		return r
	}
	if err := br.alive(); err != nil {
		r.err = err
		return r
	}
	if kind == kindHub {
		if r.rtAfter, err = b.hubRuntime(br); err != nil {
			r.err = err
			return r
		}
	}
	// Every connection must still be up (none cut while idle).
	for i, c := range clients {
		select {
		case <-c.Done():
			r.err = fmt.Errorf("connection %d ended while idle", i)
			return r
		default:
		}
	}
	return r
}

// settledRSS samples RSS once a second until three successive samples are
// within 1 % of each other (or max passed) and returns the last.
func settledRSS(ctx context.Context, pid int, maxWait time.Duration) (int64, error) {
	deadline := time.Now().Add(maxWait)
	var hist []int64
	for {
		v, err := rssBytes(pid)
		if err != nil {
			return 0, err
		}
		hist = append(hist, v)
		if k := len(hist); k >= 3 {
			lo, hi := min(hist[k-1], hist[k-2], hist[k-3]), max(hist[k-1], hist[k-2], hist[k-3])
			if float64(hi-lo) <= 0.01*float64(hi) {
				return v, nil
			}
		}
		if time.Now().After(deadline) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (s *idleSummary) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "N idle TLS connections (the hub: one device id and token each; Mosquitto: anonymous), keepalive %d s, "+
		"opened %d at a time, then left idle for %v; per connection = (RSS once settled − RSS before) / N.\n\n", s.opts.keepalive, s.opts.concurrency, s.opts.wait)
	t := table{head: []string{"N", "broker", "RSS before", "RSS after", "KB per connection", "connect time"}}
	for _, n := range s.opts.counts {
		for _, kind := range s.opts.brokers {
			r, ok := s.runs[idleKey(kind, n)]
			switch {
			case !ok:
				t.add(fmt.Sprint(n), kind, "–", "–", "not run", "–")
			case r.err != nil:
				t.add(fmt.Sprint(n), kind, "–", "–", "**FAILED**: "+oneLine(r.err.Error()), "–")
			default:
				t.add(fmt.Sprint(n), kind, fmt.Sprintf("%.1f MiB", mib(r.before)), fmt.Sprintf("%.1f MiB", mib(r.after)),
					fmt.Sprintf("%.1f", r.perConnKB()), fmt.Sprintf("%.1f s", r.connectTime.Seconds()))
			}
		}
		if h, m, ok := s.pair(n); ok {
			t.add(fmt.Sprint(n), "hub / Mosquitto", "", "", fmt.Sprintf("**%.2f×**", h.perConnKB()/m.perConnKB()), "")
		}
	}
	sb.WriteString(t.String())
	rt := table{head: []string{"N"}}
	for _, g := range hubRuntime {
		rt.head = append(rt.head, g.label)
	}
	for _, n := range s.opts.counts {
		r, ok := s.runs[idleKey(kindHub, n)]
		if !ok || r.err != nil || r.rtAfter == nil {
			continue
		}
		row := []string{fmt.Sprint(n)}
		for _, g := range hubRuntime {
			row = append(row, fmt.Sprintf("%.1f", r.runtimePerConn(g.metric)))
		}
		rt.add(row...)
	}
	if len(rt.rows) > 0 {
		sb.WriteString("\nThe hub's growth per connection by its Go runtime gauges (`/metrics`): goroutines, stacks, " +
			"live and not yet swept heap objects, and free heap not yet returned to the kernel.\n\n")
		sb.WriteString(rt.String())
	}
	return sb.String()
}

func (s *idleSummary) pair(n int) (h, m idleRun, ok bool) {
	h, ok1 := s.runs[idleKey(kindHub, n)]
	m, ok2 := s.runs[idleKey(kindMosquitto, n)]
	return h, m, ok1 && ok2 && h.err == nil && m.err == nil && m.perConnKB() > 0
}

func (s *idleSummary) targets() []target {
	var ts []target
	for _, n := range s.opts.counts {
		what := fmt.Sprintf("memory per idle TLS device, %d devices", n)
		if h, m, ok := s.pair(n); ok {
			ratio := h.perConnKB() / m.perConnKB()
			ts = append(ts, target{what, "≤ 2× Mosquitto", fmt.Sprintf("%.1f KB vs %.1f KB = %.2f×", h.perConnKB(), m.perConnKB(), ratio), ptr(ratio <= 2)})
		} else if h, ok := s.runs[idleKey(kindHub, n)]; ok && h.err != nil {
			ts = append(ts, target{what, "≤ 2× Mosquitto", "hub run failed", ptr(false)})
		} else {
			ts = append(ts, target{what, "≤ 2× Mosquitto", "no comparison", nil})
		}
	}
	return ts
}
