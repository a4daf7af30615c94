package loadgen

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

// BenchmarkHubFanIn runs the throughput load (10 publishers × 1 in flight,
// QoS 1 publishes, one QoS 1 subscriber) against a hub in this process, to
// profile the hub:
//
//	go test -run '^$' -bench HubFanIn -benchtime 20000x -cpuprofile cpu.out ./internal/loadgen
//	go tool pprof -tagignore side=generator -top cpu.out
//
// The generator's goroutines carry the pprof label side=generator, so the
// hub's share of the profile can be separated from the generator's.
func BenchmarkHubFanIn(b *testing.B) { benchFanIn(b, 1) }

// BenchmarkHubFanInQoS0 is BenchmarkHubFanIn with QoS 0 publishes and
// subscription: the broker's core path, with no wait for the store.
func BenchmarkHubFanInQoS0(b *testing.B) { benchFanIn(b, 0) }

func benchFanIn(b *testing.B, qos byte) {
	th := startHub(b)
	cfg := th.config("bf")
	cfg.QoS, cfg.SubQoS, cfg.Publishers, cfg.InFlight, cfg.Subscribers = qos, qos, 10, 1, 1
	ctx := context.Background()
	var g *Gen
	var res Result
	var err error
	pprof.Do(ctx, pprof.Labels("side", "generator"), func(ctx context.Context) {
		if g, err = Connect(ctx, cfg); err != nil {
			return
		}
		b.ResetTimer()
		res, err = g.RunFor(ctx, 0, b.N/cfg.Publishers+1)
		b.StopTimer()
	})
	if g != nil {
		defer g.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Rate, "msg/s")
}

// BenchmarkHubConnect opens b.N TLS connections with token authentication
// (kept open) to a hub in this process; profile it like BenchmarkHubFanIn.
// With OUTPOST_HEAP_PROFILE=FILE it writes a heap profile while the
// connections are still open: what idle connections keep alive, e.g.
//
//	OUTPOST_HEAP_PROFILE=heap.out go test -run '^$' -bench HubConnect -benchtime 2000x ./internal/loadgen
//	go tool pprof -sample_index inuse_space -tagignore side=generator -top heap.out
func BenchmarkHubConnect(b *testing.B) {
	th := startHub(b)
	toks := make([]string, b.N)
	for i := range toks {
		var err error
		if toks[i], err = th.tokens("bc-"+strconv.Itoa(i), false); err != nil {
			b.Fatal(err)
		}
	}
	clients := make([]*Client, 0, b.N)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	ctx := context.Background()
	b.ResetTimer()
	pprof.Do(ctx, pprof.Labels("side", "generator"), func(ctx context.Context) {
		for i := range b.N {
			id := "bc-" + strconv.Itoa(i)
			c, err := Dial(ctx, DialOptions{Addr: th.addr, TLS: th.tls, ClientID: id, Username: id, Password: toks[i], KeepAlive: 60})
			if err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
	})
	b.StopTimer()
	if f := os.Getenv("OUTPOST_HEAP_PROFILE"); f != "" {
		time.Sleep(time.Second) // let presence and the store settle
		runtime.GC()
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
			b.Fatal(err)
		}
	}
}
