package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/hub/presence"
	"github.com/outpost-iot/outpost/internal/loadgen"
	"github.com/outpost-iot/outpost/internal/protocol"
)

type presenceOpts struct {
	n         int    // devices, split over the four ways of going away
	keepalive uint16 // of the frozen clients
}

// presGroup is one way a device goes away and the reason the hub must give.
type presGroup struct {
	name   string
	what   string
	reason string
	bound  func(o presenceOpts) time.Duration
	target string
}

var presGroups = []presGroup{
	{"frozen", "kill -STOP: socket open, silence (no PINGREQ) after CONNECT", presence.ReasonKeepalive,
		func(o presenceOpts) time.Duration { return time.Duration(o.keepalive) * 1500 * time.Millisecond }, "p99 ≤ 1.5 × keepalive"},
	{"killed", "kill -9: TCP closed, no DISCONNECT, no will", presence.ReasonLost,
		func(o presenceOpts) time.Duration { return time.Duration(o.keepalive) * 1500 * time.Millisecond }, "p99 ≤ 1.5 × keepalive"},
	{"clean", "DISCONNECT (normal)", presence.ReasonClean,
		func(presenceOpts) time.Duration { return 50 * time.Millisecond }, "p99 ≤ 50 ms"},
	{"will", "TCP closed, with a last-will on d/{id}/status", presence.ReasonWill,
		func(presenceOpts) time.Duration { return 50 * time.Millisecond }, "p99 ≤ 50 ms"},
}

// sseEvent is one server-sent event.
type sseEvent struct {
	typ  string
	data string
	at   time.Time
}

// readSSE parses a text/event-stream into events (comments are dropped).
func readSSE(r io.Reader, out func(sseEvent)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 {
				ev.data, ev.at = strings.Join(data, "\n"), time.Now()
				if ev.typ == "" {
					ev.typ = "message"
				}
				out(ev)
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			ev.typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return sc.Err()
}

// watch is what the bench waits for about one device.
type watch struct {
	group   *presGroup
	online  chan struct{}
	t0      time.Time // when it went away
	gotAt   time.Time
	reason  string
	offline chan struct{}
}

type presenceResult struct {
	group   presGroup
	lat     []time.Duration
	wrong   []string
	missing int
}

type presenceSummary struct {
	opts    presenceOpts
	results []presenceResult
	err     error
}

func (b *bench) presence(ctx context.Context, o presenceOpts) *presenceSummary {
	s := &presenceSummary{opts: o}
	s.results, s.err = b.presenceRun(ctx, o)
	if s.err != nil {
		b.progress("presence: FAILED: %v", s.err)
	}
	for _, r := range s.results {
		q := loadgen.QuantilesOf(r.lat)
		b.progress("presence %s: %s, wrong reason %d, missing %d", r.group.name, q, len(r.wrong), r.missing)
	}
	return s
}

func (b *bench) presenceRun(ctx context.Context, o presenceOpts) ([]presenceResult, error) {
	br, err := b.startBroker(ctx, kindHub)
	if err != nil {
		return nil, err
	}
	defer br.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var mu sync.Mutex
	watches := map[string]*watch{}
	req, _ := http.NewRequestWithContext(ctx, "GET", br.httpURL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+br.admin)
	resp, err := b.httpClient(0).Do(req)
	if err != nil {
		return nil, fmt.Errorf("events stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("events stream: HTTP %d", resp.StatusCode)
	}
	go func() {
		_ = readSSE(resp.Body, func(ev sseEvent) {
			if ev.typ != "presence" {
				return
			}
			var pe protocol.PresenceEvent
			if json.Unmarshal([]byte(ev.data), &pe) != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			w := watches[pe.Device]
			if w == nil {
				return
			}
			switch pe.State {
			case presence.Online:
				closeOnce(w.online)
			case presence.Offline:
				if w.gotAt.IsZero() {
					w.gotAt, w.reason = ev.at, pe.Reason
					closeOnce(w.offline)
				}
			}
		})
	}()

	per := max(o.n/len(presGroups), 1)
	type dev struct {
		id string
		w  *watch
		c  *loadgen.Client
	}
	var devs []dev
	for gi := range presGroups {
		g := &presGroups[gi]
		for i := range per {
			id := fmt.Sprintf("pres-%s-%d", g.name, i)
			w := &watch{group: g, online: make(chan struct{}), offline: make(chan struct{})}
			mu.Lock()
			watches[id] = w
			mu.Unlock()
			devs = append(devs, dev{id: id, w: w})
		}
	}
	defer func() {
		for _, d := range devs {
			if d.c != nil {
				_ = d.c.Raw.Close()
			}
		}
	}()
	// Connect everyone, frozen devices first: their clock starts at CONNACK.
	for k := range devs {
		d := &devs[k]
		tok, err := br.token(d.id, false)
		if err != nil {
			return nil, err
		}
		opt := loadgen.DialOptions{Addr: br.addr, TLS: b.tlsConfig(), ClientID: d.id, Username: d.id, Password: tok, KeepAlive: 60}
		switch d.w.group.reason {
		case presence.ReasonKeepalive:
			opt.KeepAlive, opt.NoPing = o.keepalive, true
		case presence.ReasonWill:
			opt.Will = &paho.WillMessage{Topic: protocol.DeviceTopic(d.id, protocol.SufStatus), QoS: 1, Retain: true,
				Payload: []byte(`{"v":1,"state":"offline","epoch":1}`)}
		}
		if d.c, err = loadgen.Dial(ctx, opt); err != nil {
			return nil, err
		}
		if d.w.group.reason == presence.ReasonKeepalive {
			mu.Lock()
			d.w.t0 = time.Now() // the broker read CONNECT (its last packet) just before this
			mu.Unlock()
		}
	}
	for _, d := range devs {
		select {
		case <-d.w.online:
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("no online event for %s within 10 s", d.id)
		}
	}
	// The others go away one by one, 20 ms apart.
	for _, d := range devs {
		if d.w.group.reason == presence.ReasonKeepalive {
			continue
		}
		mu.Lock()
		d.w.t0 = time.Now()
		mu.Unlock()
		switch d.w.group.reason {
		case presence.ReasonClean:
			_ = d.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		default:
			_ = d.c.Raw.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.After(time.Duration(o.keepalive)*1500*time.Millisecond + 10*time.Second)
wait:
	for _, d := range devs {
		select {
		case <-d.w.offline:
		case <-deadline:
			break wait
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := br.alive(); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	var out []presenceResult
	for gi := range presGroups {
		r := presenceResult{group: presGroups[gi]}
		for _, d := range devs {
			w := d.w
			switch {
			case w.group != &presGroups[gi]:
			case w.gotAt.IsZero():
				r.missing++
			case w.reason != w.group.reason:
				r.wrong = append(r.wrong, d.id+": "+w.reason)
			default:
				r.lat = append(r.lat, w.gotAt.Sub(w.t0))
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

func (s *presenceSummary) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Hub only. %d devices in four groups; latency from the moment a device went away (frozen: its CONNACK, "+
		"after which it sends nothing; keepalive %d s, so 1.5 × keepalive = %.1f s) to the offline event on the admin API's "+
		"SSE stream (`GET /api/v1/events`, HTTPS), as the client of that stream receives it.\n\n",
		s.opts.n, s.opts.keepalive, float64(s.opts.keepalive)*1.5)
	if s.err != nil {
		fmt.Fprintf(&sb, "**FAILED**: %s\n\n", oneLine(s.err.Error()))
	}
	t := table{head: []string{"went away by", "expected reason", "n", "p50", "p99", "max", "wrong reason / missing", "target"}}
	for _, r := range s.results {
		q := loadgen.QuantilesOf(r.lat)
		bad := fmt.Sprintf("%d / %d", len(r.wrong), r.missing)
		if len(r.wrong) > 0 {
			bad += " (" + strings.Join(r.wrong[:min(3, len(r.wrong))], ", ") + ")"
		}
		t.add(r.group.what, "`"+r.group.reason+"`", fmt.Sprint(q.N), fmtDur(q.P50), fmtDur(q.P99), fmtDur(q.Max), bad, r.group.target)
	}
	sb.WriteString(t.String())
	return sb.String()
}

func (s *presenceSummary) targets() []target {
	if s.err != nil {
		return []target{{"presence", "see below", "run failed", ptr(false)}}
	}
	var ts []target
	for _, r := range s.results {
		q := loadgen.QuantilesOf(r.lat)
		bound := r.group.bound(s.opts)
		ok := len(r.wrong) == 0 && r.missing == 0 && q.N > 0 && q.P99 <= bound
		ts = append(ts, target{"presence: " + r.group.name + " → `" + r.group.reason + "`", r.group.target + fmt.Sprintf(" (%s)", fmtDur(bound)),
			fmt.Sprintf("p50 %s, p99 %s", fmtDur(q.P50), fmtDur(q.P99)), ptr(ok)})
	}
	return ts
}
