// Package e2e builds the real binaries and runs them as processes on
// loopback: a hub, gateways on simulated sensors, a TCP proxy the test
// controls to cut the network, and kill -9 of either side. After each
// ordeal, the hub must hold exactly the readings that were taken: every seq
// from 1 to the gateway's last, once.
package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/gateway/outbox"
	"github.com/outpost-iot/outpost/internal/freeport"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "outpost-e2e-bin")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-race", "-o", dir+"/", "../cmd/outpost-hub", "../cmd/outpost-gateway", "../cmd/outpostctl")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address for a child process to listen on
// (internal/freeport: from below the ephemeral range, never twice).
func freePort(t testing.TB) string {
	t.Helper()
	a, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// proc is a running binary.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	return startBin(t, filepath.Join(binDir, name), args...)
}

// startBin runs the executable at path (e.g. a gateway's own copy).
func startBin(t testing.TB, path string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(path, args...))
}

// startCmd starts cmd, collects its output and kills it at the end of the test.
func startCmd(t testing.TB, cmd *exec.Cmd) *proc {
	t.Helper()
	name := filepath.Base(cmd.Path)
	p := &proc{cmd: cmd, out: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, tail(p.out.String(), 60))
		}
	})
	return p
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) kill9() { _ = p.cmd.Process.Signal(syscall.SIGKILL); <-p.done }
func (p *proc) stop(t testing.TB) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("process did not stop on SIGTERM:\n%s", tail(p.out.String(), 30))
	}
}

type hub struct {
	dir, mqtt, http string
	p               *proc
	admin           string
	client          *http.Client
}

// startHub starts a hub; extra are further flags (e.g. --config FILE).
func startHub(t testing.TB, dir, mqtt, httpAddr string, extra ...string) *hub {
	t.Helper()
	h := &hub{dir: dir, mqtt: mqtt, http: httpAddr}
	h.p = start(t, "outpost-hub", append([]string{"serve", "--data-dir", dir, "--mqtt-listen", mqtt, "--http-listen", httpAddr}, extra...)...)
	waitFor(t, 20*time.Second, "hub up", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err != nil {
			return false
		}
		h.admin = strings.TrimSpace(string(b))
		if h.client == nil {
			cfg, err := certs.ClientTLS(filepath.Join(dir, "pki", "ca.crt"))
			if err != nil {
				return false
			}
			h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		}
		resp, err := h.client.Get("https://" + httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return h
}

func (h *hub) get(t testing.TB, path string, out any) {
	t.Helper()
	if err := h.tryGet(path, out); err != nil {
		t.Fatal(err)
	}
}

// tryGet is get for polling: a missing device or a restarting hub is not fatal.
func (h *hub) tryGet(path string, out any) error {
	req, _ := http.NewRequest("GET", "https://"+h.http+path, nil)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// ctl runs outpostctl against the hub.
func (h *hub) ctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.tryCtl(args...)
	if err != nil {
		t.Fatalf("outpostctl %v: %v\n%s", args, err, out)
	}
	return out
}

// tryCtl runs outpostctl against the hub and returns its stdout, or its
// stderr with the error.
func (h *hub) tryCtl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "outpostctl"), args...)
	cmd.Env = append(os.Environ(), "OUTPOST_HUB=https://"+h.http, "OUTPOST_ADMIN_TOKEN="+h.admin, "OUTPOST_CA="+filepath.Join(h.dir, "pki", "ca.crt"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// seqs returns every stored seq of device (all record kinds), via the log API.
func (h *hub) seqs(t testing.TB, device string) []uint64 {
	seqs, _ := h.logSeqs(t, device)
	return seqs
}

// logSeqs returns every stored seq of device and the seq ranges its outbox
// reported as possibly lost (fault "dropped" with fault.seqs).
func (h *hub) logSeqs(t testing.TB, device string) (all []uint64, lost [][2]uint64) {
	t.Helper()
	since := uint64(0)
	for {
		var r struct {
			Records []struct {
				Seq   uint64 `json:"seq"`
				Kind  string `json:"kind"`
				Fault *struct {
					Cause string                        `json:"cause"`
					Seqs  *struct{ First, Last uint64 } `json:"seqs"`
				} `json:"fault"`
			} `json:"records"`
		}
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/api/v1/devices/%s/log?since_seq=%d&limit=10000", h.http, device, since), nil)
		req.Header.Set("Authorization", "Bearer "+h.admin)
		resp, err := h.client.Do(req)
		if err != nil {
			return nil, nil
		}
		if resp.StatusCode == 404 {
			resp.Body.Close()
			return nil, nil
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Records) == 0 {
			return all, lost
		}
		for _, x := range r.Records {
			all = append(all, x.Seq)
			if f := x.Fault; f != nil && f.Cause == "dropped" && f.Seqs != nil {
				lost = append(lost, [2]uint64{f.Seqs.First, f.Seqs.Last})
			}
		}
		since = all[len(all)-1]
	}
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

const gatewayYAML = `device_id: %s
data_dir: %s
hub: {address: %s, ca: %s, token_file: %s, keepalive: 5s, heartbeat: 1s}
outbox: {flush_interval: 200ms}
clock: {source: system}
sensors:
  - {name: temp-a, type: sim, quantity: temperature, interval: 50ms, sim: {seed: 1, base: 12, noise: 1}}
  - {name: ph-a, type: sim, quantity: ph, interval: 100ms, sim: {seed: 2, base: 5.4, noise: 0.2}}
rules:
  rules:
    - {name: temperature-low, sensors: temp-*, raise: "< 10", clear: "> 10.5"}
    - {name: ph-high, sensors: ph-*, raise: "> 5.5", clear: "< 5.4"}
`

type gw struct {
	id, dir, cfg string
	p            *proc
}

func newGateway(t testing.TB, h *hub, id, hubAddr string) *gw {
	t.Helper()
	dir := t.TempDir()
	// 24 h: longer than any test's network outage (the soak's 1 h one
	// included). A gateway cannot refresh its token while it is offline.
	tok := h.ctl(t, "token", "issue", "--device", id, "--profile", "gateway", "--ttl", "24h")
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	y := fmt.Sprintf(gatewayYAML, id, filepath.Join(dir, "data"), hubAddr, filepath.Join(h.dir, "pki", "ca.crt"), tokFile)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return &gw{id: id, dir: dir, cfg: cfg}
}

func (g *gw) start(t testing.TB) { g.p = start(t, "outpost-gateway", "run", "--config", g.cfg) }

// drained waits until the gateway is online and a heartbeat sent after
// since reports the backlog gone (only records in flight remain).
func drained(t testing.TB, h *hub, device string, since time.Time, within time.Duration) {
	t.Helper()
	waitFor(t, within, "outbox drained", func() bool {
		var d struct {
			State     string `json:"state"`
			LastHBMS  int64  `json:"last_heartbeat"`
			Heartbeat struct {
				Outbox int64 `json:"outbox"`
			} `json:"heartbeat"`
			LastSeq uint64 `json:"last_seq"`
		}
		return h.tryGet("/api/v1/devices/"+device, &d) == nil && d.State == "online" &&
			d.LastHBMS > since.UnixMilli() && d.LastSeq > 0 && d.Heartbeat.Outbox < 50 // live records in flight
	})
}

func TestGatewayToHubSurvivesKillsAndOutages(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	hubDir := t.TempDir()
	mqttAddr, httpAddr := freePort(t), freePort(t)
	h := startHub(t, hubDir, mqttAddr, httpAddr)
	px := newProxy(t, mqttAddr)
	g := newGateway(t, h, "gw-e2e", px.addr())
	g.start(t)
	waitFor(t, 20*time.Second, "first readings", func() bool { return len(h.seqs(t, "gw-e2e")) > 20 })

	// The gateway never listens.
	if ls := listeningSockets(t, g.p.cmd.Process.Pid); len(ls) > 0 {
		t.Fatalf("gateway has listening sockets: %v", ls)
	}

	// 1. kill -9 the hub mid-stream, restart it.
	h.p.kill9()
	time.Sleep(time.Second) // the gateway keeps sampling into its outbox
	h = startHub(t, hubDir, mqttAddr, httpAddr)

	// 2. kill -9 the gateway mid-stream, restart it.
	waitFor(t, 20*time.Second, "gateway reconnected", func() bool { return len(h.seqs(t, "gw-e2e")) > 60 })
	g.p.kill9()
	g.start(t)

	// 3. Cut the network for a while, then restore it.
	waitFor(t, 20*time.Second, "gateway reconnected after kill", func() bool {
		var d struct{ State string }
		return h.tryGet("/api/v1/devices/gw-e2e", &d) == nil && d.State == "online"
	})
	px.cut()
	time.Sleep(3 * time.Second)
	px.restore()
	restored := time.Now()

	// Let it run, stop the gateway cleanly, and compare.
	time.Sleep(2 * time.Second)
	drained(t, h, "gw-e2e", restored, 30*time.Second)
	g.p.stop(t)
	// Every seq the gateway assigned is at the hub or still waits in the
	// gateway's outbox (taken in the last moments, or queued behind newer
	// records); nothing else is at the hub, nothing is missing.
	ob, err := outbox.Open(context.Background(), filepath.Join(g.dir, "data", "outbox.db"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close(context.Background())
	pending, err := ob.Pending(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	last := ob.Stats().LastSeq
	hubSeqs, reported := h.logSeqs(t, "gw-e2e")
	have := map[uint64]bool{}
	for _, s := range hubSeqs {
		if s == 0 || s > last {
			t.Fatalf("hub holds seq %d, but the gateway assigned only 1..%d", s, last)
		}
		have[s] = true
	}
	for _, r := range pending {
		have[r.Seq] = true
	}
	// The kill -9 of the gateway loses nothing: the outbox's journal (in
	// the page cache, which outlives the process) kept the records that
	// were only buffered, and the seqs continue without a gap. So every seq
	// 1..last is at the hub or in the outbox, and nothing is reported as
	// possibly lost (that is for power cuts).
	if len(reported) != 0 {
		t.Errorf("the gateway reported possibly-lost ranges %v after a kill -9, want none", reported)
	}
	var missing []uint64
	for s := uint64(1); s <= last; s++ {
		if !have[s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d seqs lost: %v (hub has %d records, outbox %d, last seq %d)", len(missing), firstN(missing, 20), len(hubSeqs), len(pending), last)
	}
	if uint64(len(hubSeqs)) < last/2 {
		t.Fatalf("only %d of %d records reached the hub", len(hubSeqs), last)
	}
	t.Logf("hub holds %d records, the outbox %d more, of seqs 1..%d: none lost", len(hubSeqs), len(pending), last)

	// Presence history shows the ordeal with reasons.
	var ph struct {
		Presence []struct{ State, Reason string } `json:"presence"`
	}
	h.get(t, "/api/v1/devices/gw-e2e/presence", &ph)
	reasons := map[string]bool{}
	for _, p := range ph.Presence {
		reasons[p.Reason] = true
	}
	for _, want := range []string{"connected", "clean_disconnect"} {
		if !reasons[want] {
			t.Errorf("presence history lacks %q: %+v", want, ph.Presence)
		}
	}
	// The clean stop at the end is a clean disconnect, not a last-will
	// (newest first).
	if len(ph.Presence) == 0 || ph.Presence[0].Reason != "clean_disconnect" {
		t.Errorf("the gateway's clean stop was recorded as %+v, want clean_disconnect", ph.Presence[:min(1, len(ph.Presence))])
	}
}

func TestAlertsArriveWithOriginalTime(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	hubDir := t.TempDir()
	mqttAddr, httpAddr := freePort(t), freePort(t)
	h := startHub(t, hubDir, mqttAddr, httpAddr)
	px := newProxy(t, mqttAddr)
	g := newGateway(t, h, "gw-alerts", px.addr())
	px.cut() // offline from the start: alerts are raised at the edge
	g.start(t)
	time.Sleep(3 * time.Second)
	cutAt := time.Now()
	px.restore()
	waitFor(t, 30*time.Second, "an alert at the hub", func() bool {
		var r struct {
			Records []struct {
				Kind string `json:"kind"`
				T    int64  `json:"t"`
			} `json:"records"`
		}
		if h.tryGet("/api/v1/devices/gw-alerts/log?limit=10000", &r) != nil {
			return false
		}
		for _, x := range r.Records {
			if x.Kind == "alert" && time.UnixMilli(x.T).Before(cutAt) {
				return true // raised while offline, kept its original time
			}
		}
		return false
	})
}

// processTree returns pid and all its descendants (the gateway runs a
// supervisor and its worker).
func processTree(pid int) []int {
	parent := map[int]int{} // pid → ppid, from /proc/*/stat (no /proc/*/children on every kernel)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for p, pp := range parent {
			if pp == out[i] {
				out = append(out, p)
			}
		}
	}
	return out
}

// listeningSockets lists TCP/UDP sockets in LISTEN state owned by pid or
// any of its descendants.
func listeningSockets(t testing.TB, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	for _, p := range processTree(pid) {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		for _, fd := range fds {
			l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p, fd.Name()))
			if err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	if len(inodes) == 0 {
		t.Fatal("no sockets at all: the check would be vacuous")
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" { // 0A = TCP_LISTEN
				continue
			}
			if inodes[fl[9]] {
				out = append(out, f+" "+fl[1])
			}
		}
		fh.Close()
	}
	for _, f := range []string{"udp", "udp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) >= 10 && inodes[fl[9]] {
				out = append(out, f+" "+fl[1])
			}
		}
		fh.Close()
	}
	return out
}

// proxy is a TCP proxy the test can cut (closing every connection and
// refusing new ones) and restore, and whose bytes from the target to the
// clients it can hold back (hold, release).
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	budget int64      // bytes target → clients may still pass; < 0 unlimited
	more   *sync.Cond // budget raised or cut (on mu)
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}, budget: -1}
	p.more = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *proxy) pipe(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(budgetWriter{p, c}, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.more.Broadcast()
}

// hold lets n more bytes pass from the target to the clients, then stalls
// them (the connections stay open) until the next hold or release.
func (p *proxy) hold(n int64) {
	p.mu.Lock()
	p.budget = n
	p.mu.Unlock()
	p.more.Broadcast()
}

// release lets every byte pass again.
func (p *proxy) release() { p.hold(-1) }

// budgetWriter writes to a client what the proxy's budget allows.
type budgetWriter struct {
	p *proxy
	w io.Writer
}

func (b budgetWriter) Write(buf []byte) (int, error) {
	p, done := b.p, 0
	for done < len(buf) {
		p.mu.Lock()
		for p.budget == 0 && !p.down {
			p.more.Wait()
		}
		if p.down {
			p.mu.Unlock()
			return done, net.ErrClosed
		}
		n := int64(len(buf) - done)
		if p.budget >= 0 {
			n = min(n, p.budget)
			p.budget -= n
		}
		p.mu.Unlock()
		m, err := b.w.Write(buf[done : done+int(n)])
		done += m
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

var _ = tls.VersionTLS12

func firstN(s []uint64, n int) []uint64 {
	if len(s) > n {
		return s[:n]
	}
	return s
}
