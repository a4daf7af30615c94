// Package loadgen is Outpost's MQTT v5 load generator (paho, not autopaho,
// for control over every packet). N publishers, each a device "bench-<i>"
// publishing valid log batches to outpost/v1/d/bench-<i>/log with K messages
// in flight, and M subscribers on a wildcard count what was published,
// acknowledged and delivered. A run that loses or refuses a message returns
// an error wrapping ErrLoss instead of a rate: a broker that drops messages
// has no throughput worth reporting.
//
// In flight means: for QoS 1, published and not yet acknowledged (PUBACK);
// for QoS 0, which has no acknowledgement, published and not yet delivered
// to the first subscriber (a closed loop; with no subscriber QoS 0 runs open
// loop, throttled only by TCP).
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// ErrLoss is wrapped by Run's error when published, acknowledged and
// delivered counts disagree.
var ErrLoss = errors.New("loadgen: message loss")

// Config describes a load.
type Config struct {
	Addr string
	TLS  *tls.Config // nil: plaintext

	Publishers  int  // N; default 10
	InFlight    int  // K per publisher; default 1
	QoS         byte // 0 or 1
	PayloadSize int  // bytes, MinPayload..MaxPayload; default 100

	Duration time.Duration // publish for this long (default 5 s) …
	Messages int           // … or, if > 0, exactly this many per publisher

	Subscribers int    // M; each must receive every message
	SubFilter   string // default outpost/v1/d/+/log
	SubQoS      byte   // the subscriptions' QoS (set it: 0 is QoS 0)

	// PublisherID names publisher i (default "bench-<i>"); it is the MQTT
	// client id and the device id of its topic.
	PublisherID  func(i int) string
	SubscriberID func(j int) string // default "bench-sub-<j>"
	// Token returns the password (channel token) for a client id; nil or ""
	// connects without one (Mosquitto with allow_anonymous).
	Token func(clientID string, subscriber bool) (string, error)

	KeepAlive       uint16        // default 60 s
	Settle          time.Duration // wait this long without progress for outstanding deliveries; default 3 s
	Timeout         time.Duration // per connect and per publish; default 10 s
	DialConcurrency int           // default 16
	NoCoalesce      bool          // see DialOptions.NoCoalesce

	// dropDelivery, in tests, makes a subscriber ignore a delivery.
	dropDelivery func(sub, pub int, seq uint64) bool
}

func (c *Config) setDefaults() error {
	if c.Publishers == 0 {
		c.Publishers = 10
	}
	if c.InFlight == 0 {
		c.InFlight = 1
	}
	if c.PayloadSize == 0 {
		c.PayloadSize = 100
	}
	if c.Duration == 0 && c.Messages == 0 {
		c.Duration = 5 * time.Second
	}
	if c.SubFilter == "" {
		c.SubFilter = protocol.DeviceTopic("+", protocol.SufLog)
	}
	if c.PublisherID == nil {
		c.PublisherID = func(i int) string { return "bench-" + strconv.Itoa(i) }
	}
	if c.SubscriberID == nil {
		c.SubscriberID = func(j int) string { return "bench-sub-" + strconv.Itoa(j) }
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.DialConcurrency == 0 {
		c.DialConcurrency = 16
	}
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr: empty"))
	}
	if c.Publishers < 1 || c.InFlight < 1 || c.Subscribers < 0 {
		errs = append(errs, fmt.Errorf("publishers %d, in flight %d, subscribers %d: need ≥ 1, ≥ 1, ≥ 0", c.Publishers, c.InFlight, c.Subscribers))
	}
	if c.QoS > 1 || c.SubQoS > 1 {
		errs = append(errs, fmt.Errorf("qos %d, sub qos %d: 0 or 1", c.QoS, c.SubQoS))
	}
	if c.PayloadSize < MinPayload || c.PayloadSize > MaxPayload {
		errs = append(errs, fmt.Errorf("payload size %d: must be %d..%d (one log record)", c.PayloadSize, MinPayload, MaxPayload))
	}
	if c.Messages < 0 || c.Duration < 0 {
		errs = append(errs, errors.New("messages and duration must be ≥ 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("loadgen: config: %w", err)
	}
	return nil
}

// Result of one Run.
type Result struct {
	QoS          byte
	Publishers   int
	InFlight     int
	Subscribers  int
	PayloadBytes int

	Published  uint64          // PUBLISH packets sent (or attempted)
	Acked      uint64          // QoS 1: PUBACK with reason < 0x80; QoS 0: written
	Refused    map[byte]uint64 // PUBACK reason ≥ 0x80 → count
	Errors     uint64          // publishes that failed otherwise (timeout, connection)
	FirstError string
	Delivered  uint64 // distinct messages received, summed over subscribers
	Duplicates uint64 // received again (allowed at QoS 1, reported)
	Unexpected uint64 // deliveries not from this run's publishers or not a bench payload

	Elapsed time.Duration // first publish to last acknowledgement
	Rate    float64       // acknowledged messages per second

	// Latency is publish → PUBACK for QoS 1, publish → delivery at the first
	// subscriber for QoS 0.
	Latency Quantiles
}

// String is a one-line summary.
func (r Result) String() string {
	s := fmt.Sprintf("qos %d, %d×%d, %d B: published %d, acked %d, delivered %d in %v: %.0f msg/s, latency %v",
		r.QoS, r.Publishers, r.InFlight, r.PayloadBytes, r.Published, r.Acked, r.Delivered, r.Elapsed.Round(time.Millisecond), r.Rate, r.Latency)
	if r.Duplicates > 0 {
		s += fmt.Sprintf(", %d duplicates", r.Duplicates)
	}
	return s
}

// Gen is a connected load: publishers and subscribers ready to Run.
type Gen struct {
	cfg   Config
	pubs  []*publisher
	subs  []*subscriber
	index map[string]int // topic → publisher

	connErr atomic.Pointer[error]
	closing atomic.Bool
	mu      sync.Mutex // one Run at a time
}

type publisher struct {
	id, topic string
	cl        *Client
	seq       atomic.Uint64 // last sequence number used

	// QoS 0 closed loop: a slot per message in flight, freed by delivery.
	window chan struct{}
	sentMu sync.Mutex
	sent   map[uint64]time.Time
}

type subscriber struct {
	g   *Gen
	j   int
	cl  *Client
	mu  sync.Mutex
	run *subRun // nil between runs
}

// subRun is what one subscriber saw during one Run.
type subRun struct {
	base       []uint64 // per publisher: seqs above base belong to this run
	got        []bitset
	unique     uint64
	dups       uint64
	unexpected uint64
	lat        []time.Duration
}

// Connect dials every subscriber (and subscribes), then every publisher.
func Connect(ctx context.Context, cfg Config) (*Gen, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gen{cfg: cfg, index: map[string]int{}}
	for i := range cfg.Publishers {
		id := cfg.PublisherID(i)
		p := &publisher{id: id, topic: protocol.DeviceTopic(id, protocol.SufLog)}
		if cfg.QoS == 0 && cfg.Subscribers > 0 {
			p.window = make(chan struct{}, cfg.InFlight)
			p.sent = map[uint64]time.Time{}
		}
		if _, dup := g.index[p.topic]; dup {
			return nil, fmt.Errorf("loadgen: publisher id %q used twice", id)
		}
		g.index[p.topic] = i
		g.pubs = append(g.pubs, p)
	}
	for j := range cfg.Subscribers {
		g.subs = append(g.subs, &subscriber{g: g, j: j})
	}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()
	// Subscribers first, so that they see every message.
	err := forEach(ctx, len(g.subs), cfg.DialConcurrency, func(ctx context.Context, j int) error {
		s := g.subs[j]
		c, err := g.dial(ctx, cfg.SubscriberID(j), true, 65535, s.deliver)
		if err != nil {
			return err
		}
		s.cl = c
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		sa, err := c.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: cfg.SubFilter, QoS: cfg.SubQoS}}})
		if sa != nil && (len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 || sa.Reasons[0] < cfg.SubQoS) {
			return fmt.Errorf("loadgen: subscriber %s: SUBACK %v for %q at QoS %d", cfg.SubscriberID(j), sa.Reasons, cfg.SubFilter, cfg.SubQoS)
		}
		if err != nil {
			return fmt.Errorf("loadgen: subscribe %s: %w", cfg.SubscriberID(j), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = forEach(ctx, len(g.pubs), cfg.DialConcurrency, func(ctx context.Context, i int) error {
		c, err := g.dial(ctx, g.pubs[i].id, false, 16, nil)
		g.pubs[i].cl = c
		return err
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

func (g *Gen) dial(ctx context.Context, id string, sub bool, recvMax uint16, onPub func(*paho.Publish)) (*Client, error) {
	var tok string
	if g.cfg.Token != nil {
		var err error
		if tok, err = g.cfg.Token(id, sub); err != nil {
			return nil, fmt.Errorf("loadgen: token for %s: %w", id, err)
		}
	}
	c, err := Dial(ctx, DialOptions{Addr: g.cfg.Addr, TLS: g.cfg.TLS, ClientID: id, Username: id, Password: tok,
		KeepAlive: g.cfg.KeepAlive, ReceiveMaximum: recvMax, OnPublish: onPub, Timeout: g.cfg.Timeout,
		NoCoalesce: g.cfg.NoCoalesce})
	if err != nil {
		return nil, err
	}
	go func() {
		<-c.connCtx.Done()
		if !g.closing.Load() {
			e := fmt.Errorf("loadgen: connection of %s ended during the run", id)
			g.connErr.CompareAndSwap(nil, &e)
		}
	}()
	return c, nil
}

// Close disconnects every client.
func (g *Gen) Close() {
	g.closing.Store(true)
	var wg sync.WaitGroup
	for _, c := range g.clients() {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}

func (g *Gen) clients() []*Client {
	var cs []*Client
	for _, p := range g.pubs {
		if p.cl != nil {
			cs = append(cs, p.cl)
		}
	}
	for _, s := range g.subs {
		if s.cl != nil {
			cs = append(cs, s.cl)
		}
	}
	return cs
}

// deliver runs on the subscriber's paho goroutine.
func (s *subscriber) deliver(m *paho.Publish) {
	now := time.Now()
	g := s.g
	i, ok := g.index[m.Topic]
	seq, ok2 := parseSeq(m.Payload)
	s.mu.Lock()
	r := s.run
	if r == nil {
		s.mu.Unlock()
		return // between runs: a late delivery of an earlier run
	}
	if !ok || !ok2 || seq <= r.base[i] || seq > g.pubs[i].seq.Load() {
		r.unexpected++
		s.mu.Unlock()
		return
	}
	if g.cfg.dropDelivery != nil && g.cfg.dropDelivery(s.j, i, seq) {
		s.mu.Unlock()
		return
	}
	fresh := r.got[i].set(seq - r.base[i])
	if fresh {
		r.unique++
	} else {
		r.dups++
	}
	var sentAt time.Time
	p := g.pubs[i]
	if fresh && s.j == 0 && p.window != nil {
		p.sentMu.Lock()
		sentAt = p.sent[seq]
		delete(p.sent, seq)
		p.sentMu.Unlock()
		if !sentAt.IsZero() {
			r.lat = append(r.lat, now.Sub(sentAt))
		}
	}
	s.mu.Unlock()
	if !sentAt.IsZero() {
		select {
		case <-p.window:
		default:
		}
	}
}

// pubRun is one publisher goroutine's share of a Run.
type pubRun struct {
	published, acked, errors uint64
	refused                  map[byte]uint64
	firstErr                 error
	lat                      []time.Duration
}

// Run publishes for cfg.Duration (or cfg.Messages per publisher), waits for
// deliveries to settle and checks the counts. Runs may repeat on one Gen:
// sequence numbers continue. The error wraps ErrLoss when anything was lost.
func (g *Gen) Run(ctx context.Context) (Result, error) {
	return g.RunFor(ctx, g.cfg.Duration, g.cfg.Messages)
}

// RunFor is Run for a duration d or, if messages > 0, exactly messages per
// publisher (a warm-up, say).
func (g *Gen) RunFor(ctx context.Context, d time.Duration, messages int) (Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cfg := g.cfg
	cfg.Duration, cfg.Messages = d, messages
	if messages <= 0 && d <= 0 {
		return Result{}, errors.New("loadgen: run needs a duration or a message count")
	}
	res := Result{QoS: cfg.QoS, Publishers: cfg.Publishers, InFlight: cfg.InFlight, Subscribers: cfg.Subscribers,
		PayloadBytes: len(Payload(g.pubs[0].seq.Load()+1, cfg.PayloadSize, 0)), Refused: map[byte]uint64{}}
	if e := g.connErr.Load(); e != nil {
		return res, *e
	}
	base := make([]uint64, len(g.pubs))
	for i, p := range g.pubs {
		base[i] = p.seq.Load()
		if p.window != nil {
			for len(p.window) > 0 { // slots of an earlier run's lost messages
				<-p.window
			}
			p.sentMu.Lock()
			clear(p.sent)
			p.sentMu.Unlock()
		}
	}
	for _, s := range g.subs {
		r := &subRun{base: base, got: make([]bitset, len(g.pubs))}
		s.mu.Lock()
		s.run = r
		s.mu.Unlock()
	}

	stop := make(chan struct{})
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }) }
	runs := make([]*pubRun, 0, len(g.pubs)*cfg.InFlight)
	var wg sync.WaitGroup
	var acked atomic.Uint64 // progress, for the stall watchdog
	start := time.Now()
	for _, p := range g.pubs {
		var remaining atomic.Int64
		remaining.Store(int64(cfg.Messages))
		for range cfg.InFlight {
			pr := &pubRun{refused: map[byte]uint64{}}
			runs = append(runs, pr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.publishLoop(ctx, cfg, p, pr, stop, &remaining, &acked)
			}()
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var stalled bool
	var timer <-chan time.Time
	if cfg.Messages == 0 {
		timer = time.After(cfg.Duration)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	last, lastChange := uint64(0), time.Now()
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-timer:
			halt()
		case <-ctx.Done():
			halt()
		case now := <-tick.C:
			if g.connErr.Load() != nil {
				halt()
			}
			if n := acked.Load(); n != last {
				last, lastChange = n, now
			} else if now.Sub(lastChange) > max(cfg.Settle, cfg.Timeout) {
				stalled = true
				halt()
			}
		}
	}
	tick.Stop()
	halt()
	res.Elapsed = time.Since(start)

	var lat []time.Duration
	for _, pr := range runs {
		res.Published += pr.published
		res.Acked += pr.acked
		res.Errors += pr.errors
		for k, v := range pr.refused {
			res.Refused[k] += v
		}
		if pr.firstErr != nil && res.FirstError == "" {
			res.FirstError = pr.firstErr.Error()
		}
		lat = append(lat, pr.lat...)
	}
	if res.Elapsed > 0 {
		res.Rate = float64(res.Acked) / res.Elapsed.Seconds()
	}
	g.settle(ctx, res.Acked)
	for _, s := range g.subs {
		s.mu.Lock()
		r := s.run
		s.run = nil
		s.mu.Unlock()
		res.Delivered += r.unique
		res.Duplicates += r.dups
		res.Unexpected += r.unexpected
		if cfg.QoS == 0 && s.j == 0 {
			lat = append(lat, r.lat...)
		}
	}
	res.Latency = quantiles(lat)
	return res, g.verdict(res, stalled)
}

func (g *Gen) publishLoop(ctx context.Context, cfg Config, p *publisher, pr *pubRun, stop <-chan struct{}, remaining *atomic.Int64, acked *atomic.Uint64) {
	// A publish waiting for its PUBACK ends when the connection does.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.cl.connCtx, cancel)()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if cfg.Messages > 0 && remaining.Add(-1) < 0 {
			return
		}
		if p.window != nil {
			select {
			case p.window <- struct{}{}:
			case <-stop:
				return
			}
		}
		seq := p.seq.Add(1)
		msg := &paho.Publish{Topic: p.topic, QoS: cfg.QoS, Payload: Payload(seq, cfg.PayloadSize, 0)}
		t0 := time.Now()
		if p.window != nil {
			p.sentMu.Lock()
			p.sent[seq] = t0
			p.sentMu.Unlock()
		}
		pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		resp, err := p.cl.Publish(pctx, msg)
		cancel()
		d := time.Since(t0)
		pr.published++
		switch {
		case resp != nil && resp.ReasonCode >= 0x80:
			pr.refused[resp.ReasonCode]++
			if pr.firstErr == nil {
				pr.firstErr = fmt.Errorf("%s seq %d: PUBACK reason 0x%02x", p.id, seq, resp.ReasonCode)
			}
		case err != nil:
			pr.errors++
			if pr.firstErr == nil {
				pr.firstErr = fmt.Errorf("%s seq %d: %w", p.id, seq, err)
			}
			if ctx.Err() != nil {
				return
			}
		default:
			pr.acked++
			acked.Add(1)
			if cfg.QoS == 1 {
				pr.lat = append(pr.lat, d)
			}
		}
	}
}

// settle waits until every subscriber has seen want distinct messages, or
// until cfg.Settle passed without progress.
func (g *Gen) settle(ctx context.Context, want uint64) {
	if len(g.subs) == 0 {
		return
	}
	last, lastChange := uint64(0), time.Now()
	for {
		var total uint64
		done := true
		for _, s := range g.subs {
			s.mu.Lock()
			n := s.run.unique
			s.mu.Unlock()
			total += n
			if n < want {
				done = false
			}
		}
		if done || ctx.Err() != nil {
			return
		}
		if total != last {
			last, lastChange = total, time.Now()
		} else if time.Since(lastChange) > g.cfg.Settle {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// verdict turns disagreeing counts into an error wrapping ErrLoss.
func (g *Gen) verdict(r Result, stalled bool) error {
	var problems []string
	if stalled {
		problems = append(problems, fmt.Sprintf("no progress for %v", max(g.cfg.Settle, g.cfg.Timeout)))
	}
	problems = append(problems, checkCounts(r)...)
	if e := g.connErr.Load(); e != nil {
		problems = append(problems, (*e).Error())
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrLoss, strings.Join(problems, "; "))
}

// checkCounts lists every disagreement between the counts of r.
func checkCounts(r Result) []string {
	var p []string
	if r.Published == 0 {
		p = append(p, "nothing was published")
	}
	if r.Acked != r.Published {
		var codes []string
		for _, k := range slices.Sorted(maps.Keys(r.Refused)) {
			codes = append(codes, fmt.Sprintf("0x%02x×%d", k, r.Refused[k]))
		}
		p = append(p, fmt.Sprintf("published %d, acknowledged %d (refused %v, errors %d, first: %s)",
			r.Published, r.Acked, codes, r.Errors, r.FirstError))
	}
	if want := r.Acked * uint64(r.Subscribers); r.Delivered != want {
		p = append(p, fmt.Sprintf("delivered %d distinct messages to %d subscriber(s), want %d (%d per subscriber): %d lost",
			r.Delivered, r.Subscribers, want, r.Acked, int64(want)-int64(r.Delivered)))
	}
	if r.Unexpected > 0 {
		p = append(p, fmt.Sprintf("%d unexpected deliveries", r.Unexpected))
	}
	return p
}

// forEach runs f(0..n-1) with at most conc at once and returns the first error.
func forEach(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(conc, 1))
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				select {
				case errs <- err:
				default:
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// bitset is a growable set of small positive integers.
type bitset []uint64

// set adds n and reports whether it was absent.
func (b *bitset) set(n uint64) bool {
	w := n / 64
	for uint64(len(*b)) <= w {
		*b = append(*b, 0)
	}
	m := uint64(1) << (n % 64)
	if (*b)[w]&m != 0 {
		return false
	}
	(*b)[w] |= m
	return true
}
