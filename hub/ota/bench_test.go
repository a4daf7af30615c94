package ota_test

// Benchmarks for docs/benchmarks.md, each against a real hub in-process on
// loopback with real TLS MQTT clients and HTTPS downloads (client and hub
// share the machine's cores):
//
//	go test -run '^$' -bench . -benchtime 3x ./hub/ota

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

type arrival struct {
	id string
	at time.Time
}

// fleet dials n devices concurrently; each reports notices and withdrawals
// on the given channels (and may answer with behave).
func fleet(b *testing.B, r *rig, prefix string, n int, notices, withdrawals chan<- arrival, behave func(*device, protocol.OTANotice)) []*device {
	b.Helper()
	devIDs := ids(prefix, n)
	devs := make([]*device, n)
	toks := make([]string, n)
	for i, id := range devIDs {
		toks[i] = r.token(id)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var firstErr error
	for i, id := range devIDs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := &device{t: b, id: id, tok: toks[i], behave: behave}
			c, err := mqtttest.Dial(context.Background(), r.addrs.MQTT, id, toks[i], mqtttest.Options{TLS: r.tls, KeepAlive: 60, CleanStart: true,
				Timeout: 30 * time.Second, OnPublish: func(p *paho.Publish) {
					if len(p.Payload) == 0 {
						withdrawals <- arrival{id, time.Now()}
						return
					}
					notices <- arrival{id, time.Now()}
					d.onPublish(p)
				}})
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.DeviceTopic(id, protocol.SufInOTA), QoS: 1}}})
				cancel()
			}
			if err != nil {
				mu.Lock()
				firstErr = fmt.Errorf("%s: %w", id, err)
				mu.Unlock()
				return
			}
			d.c = c
			devs[i] = d
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.Cleanup(func() {
		for _, d := range devs {
			d.close()
		}
	})
	return devs
}

func drain(b *testing.B, ch <-chan arrival, n int, within time.Duration) []arrival {
	b.Helper()
	out := make([]arrival, 0, n)
	deadline := time.After(within)
	for len(out) < n {
		select {
		case a := <-ch:
			out = append(out, a)
		case <-deadline:
			b.Fatalf("only %d of %d arrivals within %v", len(out), n, within)
		}
	}
	return out
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// BenchmarkNoticeFanout1000: from POST /api/v1/ota/rollouts until each of
// 1,000 connected devices' clients received its retained notice.
func BenchmarkNoticeFanout1000(b *testing.B) {
	const n = 1000
	k := newKeys(b)
	r := startRig(b, b.TempDir(), k)
	r.uploadFile(must(k.artifact(b, "1.0.0", 4096)))
	notices, withdrawals := make(chan arrival, 2*n), make(chan arrival, 2*n)
	devs := fleet(b, r, "fan", n, notices, withdrawals, nil)
	devIDs := make([]string, n)
	for i, d := range devs {
		devIDs[i] = d.id
	}
	var lat []time.Duration
	var lastAll []time.Duration
	for b.Loop() {
		start := time.Now()
		ro := r.createRollout(ota.RolloutRequest{Release: "1.0.0", Devices: devIDs})
		got := drain(b, notices, n, 60*time.Second)
		b.StopTimer()
		var last time.Duration
		for _, a := range got {
			d := a.at.Sub(start)
			lat = append(lat, d)
			last = max(last, d)
		}
		lastAll = append(lastAll, last)
		if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/abort", nil, nil); st != 200 {
			b.Fatalf("abort: %d", st)
		}
		drain(b, withdrawals, n, 60*time.Second)
		b.StartTimer()
	}
	b.ReportMetric(float64(quantile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(quantile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(quantile(lastAll, 0.5).Microseconds())/1000, "all-ms")
}

// BenchmarkArtifactDownload50: 50 devices download a 16 MiB artifact at
// once, each resuming halfway (two Range requests), over HTTPS.
func BenchmarkArtifactDownload50(b *testing.B) {
	const n, size = 50, 16 << 20
	k := newKeys(b)
	r := startRig(b, b.TempDir(), k, func(c *hub.Config) { c.OTA.MaxDownloads = 64 })
	rel := r.uploadFile(must(k.artifact(b, "2.0.0", size)))
	devIDs := ids("dl", n)
	toks := make([]string, n)
	for i, id := range devIDs {
		toks[i] = r.token(id)
	}
	r.createRollout(ota.RolloutRequest{Release: "2.0.0", Devices: devIDs}) // offline devices: notified, may download
	url := r.addrs.HTTPURL + "/api/v1/ota/artifacts/" + rel.SHA256
	clients := make([]*http.Client, n) // one connection per device, like a fleet
	for i := range clients {
		clients[i] = &http.Client{Transport: &http.Transport{TLSClientConfig: r.tls}}
	}
	get := func(c *http.Client, tok, rng string) (int64, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Range", rng)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 206 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return io.Copy(io.Discard, resp.Body)
	}
	var total int64
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		var mu sync.Mutex
		for i := range n {
			wg.Go(func() {
				n1, err := get(clients[i], toks[i], fmt.Sprintf("bytes=0-%d", size/2-1))
				if err == nil {
					var n2 int64
					n2, err = get(clients[i], toks[i], fmt.Sprintf("bytes=%d-", size/2))
					n1 += n2
				}
				if err == nil && n1 != size {
					err = fmt.Errorf("got %d bytes", n1)
				}
				mu.Lock()
				total += n1
				mu.Unlock()
				errs <- err
			})
		}
		wg.Wait()
		elapsed += time.Since(start)
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(int64(n) * size)
	b.ReportMetric(float64(total)/(1<<20)/elapsed.Seconds(), "MiB/s")
}

// BenchmarkRolloutTo100Percent: from POST /api/v1/ota/rollouts until the
// rollout is completed, with 100 connected devices that answer at once
// (notified, downloading, verifying, installing, restarting, succeeded).
func BenchmarkRolloutTo100Percent(b *testing.B) {
	for _, waves := range [][]string{{"100%"}, {"5%", "25%", "100%"}} {
		b.Run(fmt.Sprint("waves=", len(waves)), func(b *testing.B) {
			const n = 100
			k := newKeys(b)
			r := startRig(b, b.TempDir(), k)
			r.uploadFile(must(k.artifact(b, "3.0.0", 4096)))
			notices, withdrawals := make(chan arrival, 100*n), make(chan arrival, 100*n)
			stop := make(chan struct{})
			go func() { // the fleet's arrivals are not measured here
				for {
					select {
					case <-notices:
					case <-withdrawals:
					case <-stop:
						return
					}
				}
			}()
			b.Cleanup(func() { close(stop) }) // runs after the fleet's cleanup: no sender left
			devs := fleet(b, r, "ro", n, notices, withdrawals, succeed)
			devIDs := make([]string, n)
			for i, d := range devs {
				devIDs[i] = d.id
			}
			for b.Loop() {
				ro := r.createRollout(ota.RolloutRequest{Release: "3.0.0", Devices: devIDs, Waves: waves})
				deadline := time.Now().Add(60 * time.Second)
				for {
					var cur ota.Rollout
					r.api("GET", "/api/v1/ota/rollouts/"+ro.ID, nil, &cur)
					if cur.State == ota.RolloutCompleted && cur.Succeeded == n {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("not completed: %+v", cur.Counts)
					}
					time.Sleep(2 * time.Millisecond)
				}
			}
		})
	}
}
