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
}

type idleRun struct {
	n           int
	before      int64 // RSS bytes
	after       int64
	connectTime time.Duration
	err         error
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
	if r.after, err = settledRSS(ctx, br.pid(), o.settle); err != nil {
		r.err = err
		return r
	}
	if err := br.alive(); err != nil {
		r.err = err
		return r
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
		"opened %d at a time; per connection = (RSS once settled − RSS before) / N.\n\n", s.opts.keepalive, s.opts.concurrency)
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
