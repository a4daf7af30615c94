package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/internal/loadgen"
)

type connectOpts struct {
	brokers     []string
	n           int
	concurrency int
}

// connectVariant is the client's TLS key exchange.
type connectVariant struct {
	name   string
	curves []tls.CurveID // nil: Go's default (X25519MLKEM768, X25519, …)
}

var connectVariants = []connectVariant{
	{"Go default key shares", nil},
	{"X25519 only", []tls.CurveID{tls.X25519}},
}

type connectRun struct {
	n     int
	cpu   time.Duration
	wall  time.Duration
	group string // negotiated key exchange
	err   error
}

func (r connectRun) perConnect() time.Duration { return r.cpu / time.Duration(r.n) }

type connectSummary struct {
	opts connectOpts
	runs map[string]connectRun // variant/broker
}

func (b *bench) connect(ctx context.Context, o connectOpts) *connectSummary {
	s := &connectSummary{opts: o, runs: map[string]connectRun{}}
	for _, v := range connectVariants {
		for _, kind := range o.brokers {
			if ctx.Err() != nil {
				return s
			}
			r := b.connectOnce(ctx, kind, v, o)
			s.runs[v.name+"/"+kind] = r
			if r.err != nil {
				b.progress("connect %s (%s): FAILED: %v", kind, v.name, r.err)
			} else {
				b.progress("connect %s (%s, %s): %d connects, %v broker CPU each, %.0f connects/s",
					kind, v.name, r.group, r.n, r.perConnect().Round(time.Microsecond), float64(r.n)/r.wall.Seconds())
			}
		}
	}
	return s
}

// connectOnce opens n full TLS handshakes + CONNECT (token verification on
// the hub), a few at a time, keeping them open, and charges the broker's
// CPU time over that window to the connects.
func (b *bench) connectOnce(ctx context.Context, kind string, v connectVariant, o connectOpts) connectRun {
	r := connectRun{n: o.n}
	br, err := b.startBroker(ctx, kind)
	if err != nil {
		r.err = err
		return r
	}
	defer br.kill()
	cfg := b.tlsConfig()
	cfg.CurvePreferences = v.curves
	ids := make([]string, o.n)
	toks := make([]string, o.n)
	for i := range ids { // tokens are minted before the window: the devices have them already
		ids[i] = fmt.Sprintf("conn-%d", i)
		if toks[i], err = br.token(ids[i], false); err != nil {
			r.err = err
			return r
		}
	}
	clients := make([]*loadgen.Client, o.n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				_ = c.Raw.Close()
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	cpu0, err := cpuTime(br.pid())
	if err != nil {
		r.err = err
		return r
	}
	start := time.Now()
	var mu sync.Mutex
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	for i := range o.n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := loadgen.Dial(ctx, loadgen.DialOptions{Addr: br.addr, TLS: cfg, ClientID: ids[i], Username: ids[i],
				Password: toks[i], KeepAlive: 60, Timeout: 30 * time.Second})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if r.err == nil {
					r.err = fmt.Errorf("connect %d: %w", i, err)
				}
				return
			}
			clients[i] = c
			if r.group == "" {
				r.group = c.TLS.ConnectionState().CurveID.String()
			}
		}()
	}
	wg.Wait()
	r.wall = time.Since(start)
	// Work the broker does right after CONNACK (presence, store) belongs to the connect.
	time.Sleep(300 * time.Millisecond)
	cpu1, err := cpuTime(br.pid())
	if r.err == nil {
		r.err = err
	}
	if r.err == nil {
		r.err = br.alive()
	}
	r.cpu = cpu1 - cpu0
	return r
}

func (s *connectSummary) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d full TLS 1.3 handshakes (ECDSA P-256 server certificate, no resumption) + MQTT CONNECT/CONNACK "+
		"(the hub verifies an Ed25519 channel token and records presence), %d at a time, connections kept open; "+
		"broker CPU over the window (plus 300 ms after the last CONNACK) divided by N.\n\n", s.opts.n, s.opts.concurrency)
	t := table{head: []string{"client key shares", "broker", "negotiated", "broker CPU per connect", "connects/s"}}
	for _, v := range connectVariants {
		for _, kind := range s.opts.brokers {
			r, ok := s.runs[v.name+"/"+kind]
			switch {
			case !ok:
				t.add(v.name, kind, "–", "not run", "–")
			case r.err != nil:
				t.add(v.name, kind, "–", "**FAILED**: "+oneLine(r.err.Error()), "–")
			default:
				t.add(v.name, kind, r.group, fmtDur(r.perConnect()), fmt.Sprintf("%.0f", float64(r.n)/r.wall.Seconds()))
			}
		}
	}
	sb.WriteString(t.String())
	return sb.String()
}

func (s *connectSummary) targets() []target {
	var ts []target
	for _, v := range connectVariants {
		r, ok := s.runs[v.name+"/"+kindHub]
		what := "TLS connect + token verify, server CPU (" + v.name + ")"
		switch {
		case !ok:
			ts = append(ts, target{what, "≤ 1 ms", "not run", nil})
		case r.err != nil:
			ts = append(ts, target{what, "≤ 1 ms", "failed", ptr(false)})
		default:
			ts = append(ts, target{what, "≤ 1 ms", fmtDur(r.perConnect()) + " (" + r.group + ")", ptr(r.perConnect() <= time.Millisecond)})
		}
	}
	return ts
}
