package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/protocol"
)

func TestPayload(t *testing.T) {
	for _, seq := range []uint64{1, 9, 10, 12345, 999_999_999} {
		for _, size := range []int{MinPayload, 100, 120, MaxPayload} {
			p := Payload(seq, size, 1_795_432_093_000)
			if len(p) != size {
				t.Errorf("seq %d size %d: got %d bytes: %s", seq, size, len(p), p)
			}
			b, err := protocol.DecodeBatch(p)
			if err != nil {
				t.Fatalf("seq %d size %d: not a valid log batch: %v: %s", seq, size, err, p)
			}
			if len(b.Records) != 1 || b.Records[0].Seq != seq || b.Records[0].Kind != protocol.KindReading {
				t.Fatalf("seq %d: decoded %+v", seq, b)
			}
			if got, ok := parseSeq(p); !ok || got != seq {
				t.Fatalf("parseSeq(%s) = %d, %v", p, got, ok)
			}
		}
	}
	for _, bad := range []string{"", "{}", `{"v":1,"records":[{"seq":`, `{"v":1,"records":[{"seq":x,`, `{"v":1,"records":[{"seq":12}`} {
		if _, ok := parseSeq([]byte(bad)); ok {
			t.Errorf("parseSeq(%q) accepted", bad)
		}
	}
}

// countingConn records each Write.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestCoalescingConn checks that paho's packet writer goes through the
// Locker (so one packet becomes one Write), and that without it a packet
// takes several writes (so coalescing is worth having).
func TestCoalescingConn(t *testing.T) {
	pub := &packets.Publish{Topic: "outpost/v1/d/bench-0/log", QoS: 1, PacketID: 7, Payload: Payload(1, 100, 0), Properties: &packets.Properties{}}
	var want bytes.Buffer
	if _, err := pub.WriteTo(&want); err != nil {
		t.Fatal(err)
	}

	raw := &countingConn{}
	if _, err := pub.WriteTo(&coalescingConn{Conn: raw}); err != nil {
		t.Fatal(err)
	}
	if len(raw.writes) != 1 || !bytes.Equal(raw.writes[0], want.Bytes()) {
		t.Fatalf("coalesced: %d writes, want 1 carrying the whole packet", len(raw.writes))
	}

	raw = &countingConn{}
	if _, err := pub.WriteTo(&lockedConn{Conn: raw}); err != nil {
		t.Fatal(err)
	}
	if len(raw.writes) < 2 || !bytes.Equal(bytes.Join(raw.writes, nil), want.Bytes()) {
		t.Fatalf("uncoalesced: %d writes; expected paho to write a packet in pieces", len(raw.writes))
	}
}

func TestCheckCounts(t *testing.T) {
	good := Result{Published: 100, Acked: 100, Subscribers: 2, Delivered: 200}
	cases := []struct {
		name string
		mut  func(*Result)
		want string // "" = no problem
	}{
		{"all counted", func(*Result) {}, ""},
		{"duplicates are allowed", func(r *Result) { r.Duplicates = 3 }, ""},
		{"nothing published", func(r *Result) { *r = Result{Subscribers: 1} }, "nothing was published"},
		{"refused", func(r *Result) { r.Acked = 99; r.Delivered = 198; r.Refused = map[byte]uint64{0x87: 1} }, "acknowledged 99"},
		{"one subscriber short", func(r *Result) { r.Delivered = 199 }, "1 lost"},
		{"more than acked", func(r *Result) { r.Delivered = 201 }, "want 200"},
		{"foreign messages", func(r *Result) { r.Unexpected = 1 }, "unexpected"},
	}
	for _, tc := range cases {
		r := good
		tc.mut(&r)
		p := strings.Join(checkCounts(r), "; ")
		if (tc.want == "") != (p == "") || !strings.Contains(p, tc.want) {
			t.Errorf("%s: problems %q, want %q", tc.name, p, tc.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i))
	}
	q := QuantilesOf(d)
	if q.N != 100 || q.P50 != 50 || q.P99 != 99 || q.Max != 100 {
		t.Fatalf("quantiles %+v", q)
	}
	if (Quantiles{}).String() != "n/a" || Quantile(nil, 0.5) != 0 {
		t.Fatal("empty sample")
	}
}

// testHub is a real hub in this process, on loopback with TLS.
type testHub struct {
	h    *hub.Hub
	addr string
	tls  *tls.Config
	ring *token.Keyring
}

func startHub(t testing.TB) *testHub {
	t.Helper()
	dir := t.TempDir()
	cfg := hub.DefaultConfig()
	cfg.DataDir = dir
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := hub.New(context.Background(), cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("hub: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("hub did not stop within 15 s")
		}
	})
	a := h.Addrs()
	tc, err := certs.ClientTLS(a.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	// The same keyring the hub uses: tokens minted here verify there.
	ring, err := token.OpenKeyring(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	return &testHub{h: h, addr: a.MQTT, tls: tc, ring: ring}
}

// tokens mints gateway tokens for publishers and a log-wildcard token for subscribers.
func (th *testHub) tokens(id string, sub bool) (string, error) {
	r := token.Request{Device: id, TTL: time.Hour}
	if sub {
		r.Sub = []string{protocol.DeviceTopic("+", protocol.SufLog)}
	} else {
		r.Pub, r.Sub = protocol.GatewayGrants(id)
	}
	raw, _, err := token.Issue(th.ring, r, time.Now())
	return raw, err
}

func (th *testHub) config(prefix string) Config {
	return Config{Addr: th.addr, TLS: th.tls, Token: th.tokens,
		PublisherID:  func(i int) string { return prefix + "-" + strconv.Itoa(i) },
		SubscriberID: func(j int) string { return prefix + "-sub-" + strconv.Itoa(j) },
		Settle:       time.Second, Timeout: 5 * time.Second}
}

func run(t testing.TB, cfg Config) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	return g.Run(ctx)
}

// TestRunAgainstHub runs the generator against a real hub and checks that
// every message was acknowledged, delivered and stored.
//
// Subscribers use QoS 0 here: with mochi v2.7.9 a QoS 1 subscriber fed by
// several publishers at once can deadlock the broker (Inflight.NextImmediate
// read-locks twice); see TestQoS1SubscriberFanIn.
func TestRunAgainstHub(t *testing.T) {
	th := startHub(t)
	cases := []struct {
		name string
		cfg  func(*Config)
	}{
		{"qos1 duration", func(c *Config) { c.QoS, c.Publishers, c.InFlight, c.Subscribers, c.Duration = 1, 3, 2, 1, time.Second }},
		{"qos0 count", func(c *Config) { c.QoS, c.Publishers, c.Subscribers, c.Messages = 0, 3, 2, 150 }},
	}
	for k, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "lg" + strconv.Itoa(k)
			cfg := th.config(prefix)
			tc.cfg(&cfg)
			res, err := run(t, cfg)
			if err != nil {
				t.Fatalf("run: %v (%s)", err, res)
			}
			t.Log(res)
			if res.Published == 0 || res.Acked != res.Published || res.Delivered != res.Acked*uint64(cfg.Subscribers) {
				t.Fatalf("counts disagree without an error: %s", res)
			}
			if cfg.Messages > 0 && res.Published != uint64(cfg.Messages*cfg.Publishers) {
				t.Fatalf("published %d, want %d", res.Published, cfg.Messages*cfg.Publishers)
			}
			if res.Latency.N == 0 || res.Latency.P50 <= 0 || res.Rate <= 0 {
				t.Fatalf("no latency or rate: %s", res)
			}
			// QoS 0 batches are committed asynchronously: give the store a moment.
			var stored uint64
			for try := 0; try < 100; try++ {
				stored = 0
				for i := range cfg.Publishers {
					seqs, err := th.h.Store().Seqs(context.Background(), cfg.PublisherID(i))
					if err != nil {
						t.Fatal(err)
					}
					stored += uint64(len(seqs))
				}
				if stored >= res.Acked {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if stored != res.Acked {
				t.Fatalf("hub stored %d records, acknowledged %d", stored, res.Acked)
			}
		})
	}
}

// TestRunDetectsLoss makes the generator face lossy situations; each must
// fail the run with ErrLoss rather than produce a rate.
func TestRunDetectsLoss(t *testing.T) {
	th := startHub(t)
	cases := []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"subscriber misses a publisher", func(c *Config) {
			c.Publishers = 2
			c.SubFilter = protocol.DeviceTopic("ld0-0", protocol.SufLog) // only publisher 0
		}, "lost"},
		{"one delivery dropped", func(c *Config) {
			c.dropDelivery = func(sub, pub int, seq uint64) bool { return pub == 1 && seq == 7 }
		}, "1 lost"},
		{"publishes refused", func(c *Config) {
			c.Token = func(id string, sub bool) (string, error) {
				if sub {
					return th.tokens(id, true)
				}
				raw, _, err := token.Issue(th.ring, token.Request{Device: id, Pub: []string{"outpost/v1/d/" + id + "/hb"}, TTL: time.Hour}, time.Now())
				return raw, err
			}
		}, "refused [0x87"},
	}
	for k, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := th.config("ld" + strconv.Itoa(k))
			cfg.QoS, cfg.Publishers, cfg.Subscribers, cfg.Messages = 1, 2, 1, 20 // QoS 0 subscriber: see TestRunAgainstHub
			tc.cfg(&cfg)
			res, err := run(t, cfg)
			if !errors.Is(err, ErrLoss) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrLoss mentioning %q (%s)", err, tc.want, res)
			}
			t.Log(err)
		})
	}
}

// TestQoS1SubscriberFanIn reproduces a deadlock in mochi v2.7.9: a QoS 1
// subscriber's PUBACK makes mochi call Inflight.NextImmediate, which takes
// the read lock and then calls GetAll, which takes it again; a publisher's
// Inflight.Set waiting for the write lock in between blocks the second
// RLock, and the subscriber and every publisher matching it hang for good
// (the hub's Close too). It is skipped unless OUTPOST_REPRO_MOCHI_DEADLOCK=1
// because a hang is not a test failure; once mochi is fixed (or patched via
// a replace), enable it by default.
func TestQoS1SubscriberFanIn(t *testing.T) {
	if os.Getenv("OUTPOST_REPRO_MOCHI_DEADLOCK") != "1" {
		t.Skip("reproduces a mochi v2.7.9 deadlock; set OUTPOST_REPRO_MOCHI_DEADLOCK=1 to run")
	}
	th := startHub(t)
	for k := range 10 {
		cfg := th.config("lq" + strconv.Itoa(k))
		cfg.QoS, cfg.SubQoS, cfg.Publishers, cfg.InFlight, cfg.Subscribers, cfg.Duration = 1, 1, 10, 1, 1, time.Second
		if res, err := run(t, cfg); err != nil {
			t.Fatalf("run %d: %v (%s)", k, err, res)
		}
	}
}

// TestRunDetectsBrokenConnection: a publisher whose connection ends is loss.
func TestRunDetectsBrokenConnection(t *testing.T) {
	th := startHub(t)
	cfg := th.config("lc")
	cfg.QoS, cfg.Publishers, cfg.Subscribers, cfg.Duration = 1, 2, 1, 2*time.Second
	ctx := context.Background()
	g, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	time.AfterFunc(300*time.Millisecond, func() { _ = g.pubs[1].cl.Raw.Close() })
	res, err := g.Run(ctx)
	if !errors.Is(err, ErrLoss) || !strings.Contains(err.Error(), "connection of lc-1 ended") {
		t.Fatalf("err = %v (%s)", err, res)
	}
}
