package ota_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// release signing material shared by a test's hubs.
type keys struct {
	dir  string
	priv ed25519.PrivateKey
	pub  string // release.pub
	ring *manifest.Keyring
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	dir := t.TempDir()
	if _, err := manifest.Keygen(dir, false); err != nil {
		t.Fatal(err)
	}
	priv, err := manifest.LoadPrivateKey(filepath.Join(dir, manifest.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := manifest.LoadKeyring(filepath.Join(dir, manifest.PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return &keys{dir: dir, priv: priv, pub: filepath.Join(dir, manifest.PublicKeyFile), ring: ring}
}

var arm64 = manifest.Target{OS: "linux", Arch: "arm64"}

// artifact writes size pseudo-random bytes to a new file and signs it.
func (k *keys) artifact(t testing.TB, version string, size int) (path string, data []byte) {
	t.Helper()
	data = make([]byte, size)
	rng := rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "%s/%d", version, size)))
	_, _ = rng.Read(data)
	path = filepath.Join(t.TempDir(), "outpost-gateway-"+version)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Sign(k.priv, path, version, arm64, "release "+version); err != nil {
		t.Fatal(err)
	}
	return path, data
}

type rig struct {
	*hub.Hub
	t     testing.TB
	dir   string
	keys  *keys
	addrs hub.Addresses
	tls   *tls.Config
	http  *http.Client
	stop  func()
}

func startRig(t testing.TB, dir string, k *keys, mut ...func(*hub.Config)) *rig {
	t.Helper()
	cfg := hub.DefaultConfig()
	cfg.DataDir = dir
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.MQTT.QueueSlots = 1024
	if k != nil {
		cfg.OTA.ReleaseKeys = []string{k.pub}
	}
	for _, m := range mut {
		m(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("OTA_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	h, err := hub.New(context.Background(), cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	a := h.Addrs()
	tc, err := certs.ClientTLS(a.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{Hub: h, t: t, dir: dir, keys: k, addrs: a, tls: tc,
		http: &http.Client{Transport: &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}}
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("hub Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("hub did not stop within 20 s")
			}
			r.http.CloseIdleConnections()
		})
	}
	t.Cleanup(r.stop)
	waitFor(t, 5*time.Second, "hub serving", func() bool {
		resp, err := r.http.Get(a.HTTPURL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return r
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// api calls the admin API with a JSON body and decodes the answer into out.
func (r *rig) api(method, path string, body, out any) int {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.addrs.HTTPURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+r.AdminToken())
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: %d %s: decode: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

type apiErr struct{ Error, Detail string }

// upload posts parts (name → content, in order) to the release upload route.
func (r *rig) upload(parts [][2]string) (int, []byte) {
	r.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range parts {
		w, err := mw.CreateFormFile(p[0], p[0])
		if err != nil {
			r.t.Fatal(err)
		}
		_, _ = io.WriteString(w, p[1])
	}
	_ = mw.Close()
	req, _ := http.NewRequest("POST", r.addrs.HTTPURL+"/api/v1/ota/releases", &body)
	req.Header.Set("Authorization", "Bearer "+r.AdminToken())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// uploadFile uploads an artifact and the manifest beside it; it must succeed.
func (r *rig) uploadFile(path string) ota.Release {
	r.t.Helper()
	m, err := os.ReadFile(path + manifest.ManifestSuffix)
	if err != nil {
		r.t.Fatal(err)
	}
	a, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	st, b := r.upload([][2]string{{"manifest", string(m)}, {"artifact", string(a)}})
	var resp ota.UploadResponse
	if st/100 != 2 || json.Unmarshal(b, &resp) != nil {
		r.t.Fatalf("upload %s: %d %s", path, st, b)
	}
	return resp.Release
}

func (r *rig) createRollout(req ota.RolloutRequest) ota.Rollout {
	r.t.Helper()
	var ro ota.Rollout
	if st := r.api("POST", "/api/v1/ota/rollouts", req, &ro); st != http.StatusCreated {
		var e apiErr
		r.api("POST", "/api/v1/ota/rollouts", req, &e)
		r.t.Fatalf("create rollout: %d %+v", st, e)
	}
	return ro
}

func (r *rig) rollout(id string) ota.Rollout {
	r.t.Helper()
	var ro ota.Rollout
	if st := r.api("GET", "/api/v1/ota/rollouts/"+id, nil, &ro); st != http.StatusOK {
		r.t.Fatalf("get rollout %s: %d", id, st)
	}
	return ro
}

func (r *rig) token(id string) string {
	r.t.Helper()
	pub, sub := protocol.GatewayGrants(id)
	raw, _, err := r.Issue(context.Background(), token.Request{Device: id, Pub: pub, Sub: sub, TTL: time.Hour})
	if err != nil {
		r.t.Fatal(err)
	}
	return raw
}

// device is a simulated gateway: it subscribes to its notices and reports
// statuses, by hand (report) or automatically (behave).
type device struct {
	t       testing.TB
	id, tok string
	c       *mqtttest.Client

	mu          sync.Mutex
	notices     []protocol.OTANotice
	withdrawals int
	firstAt     time.Time // when the first notice arrived
	behave      func(d *device, n protocol.OTANotice)
	wg          sync.WaitGroup
}

func (r *rig) dial(id, tok string, behave func(*device, protocol.OTANotice)) *device {
	r.t.Helper()
	d := &device{t: r.t, id: id, tok: tok, behave: behave}
	// Generous timeouts: this is set-up, and the shared CI machine can be very busy.
	c, err := mqtttest.Dial(context.Background(), r.addrs.MQTT, id, tok, mqtttest.Options{TLS: r.tls, KeepAlive: 30, CleanStart: true,
		Timeout: 30 * time.Second, OnPublish: d.onPublish})
	if err != nil {
		r.t.Fatalf("dial %s: %v", id, err)
	}
	d.c = c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.DeviceTopic(id, protocol.SufInOTA), QoS: 1}}}); err != nil {
		r.t.Fatalf("subscribe %s: %v", id, err)
	}
	r.t.Cleanup(d.close)
	return d
}

func (d *device) close() {
	_ = d.c.Disconnect(&paho.Disconnect{})
	d.c.Conn.Close()
	d.wg.Wait()
}

func (d *device) onPublish(p *paho.Publish) {
	if len(p.Payload) == 0 {
		d.mu.Lock()
		d.withdrawals++
		d.mu.Unlock()
		return
	}
	n, err := protocol.DecodeOTANotice(p.Payload)
	if err != nil {
		d.t.Errorf("%s: bad notice: %v", d.id, err)
		return
	}
	d.mu.Lock()
	if len(d.notices) == 0 {
		d.firstAt = time.Now()
	}
	d.notices = append(d.notices, n)
	behave := d.behave
	d.mu.Unlock()
	if behave != nil {
		d.wg.Add(1)
		go func() { // not in paho's callback: reporting waits for PUBACKs
			defer d.wg.Done()
			behave(d, n)
		}()
	}
}

func (d *device) got() (notices []protocol.OTANotice, withdrawals int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]protocol.OTANotice(nil), d.notices...), d.withdrawals
}

// report publishes a status and returns the PUBACK reason code.
func (d *device) report(n protocol.OTANotice, state, reason string) byte {
	st := protocol.OTAStatus{V: 1, Rollout: n.Rollout, Release: n.Release, State: state, Reason: reason, Time: time.Now().UnixMilli()}
	if state == protocol.OTASucceeded {
		st.Firmware = n.Release
	}
	b, _ := json.Marshal(st)
	return d.publishStatus(b)
}

func (d *device) publishStatus(b []byte) byte {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := d.c.Publish(ctx, &paho.Publish{Topic: protocol.DeviceTopic(d.id, protocol.SufOTAStatus), QoS: 1, Payload: b})
	if pr != nil {
		return pr.ReasonCode
	}
	if err != nil {
		d.t.Errorf("%s: publish status: %v", d.id, err)
	}
	return 0xff
}

// succeed reports the whole happy path at once.
func succeed(d *device, n protocol.OTANotice) {
	for _, s := range []string{protocol.OTANotified, protocol.OTADownloading, protocol.OTAVerifying, protocol.OTAInstalling, protocol.OTARestarting, protocol.OTASucceeded} {
		if rc := d.report(n, s, ""); rc != 0 {
			d.t.Errorf("%s: status %s: PUBACK 0x%02x", d.id, s, rc)
			return
		}
	}
}

func fail(reason string) func(*device, protocol.OTANotice) {
	return func(d *device, n protocol.OTANotice) {
		d.report(n, protocol.OTADownloading, "")
		d.report(n, protocol.OTAFailed, reason)
	}
}

// download fetches url with the device's token and optional Range.
func (r *rig) download(url, bearer, rangeHdr string, hdr ...string) (*http.Response, []byte) {
	r.t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if rangeHdr != "" {
		req.Header.Set("Range", rangeHdr)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, b
}

func artifactFiles(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func metricsText(r *rig) string {
	req, _ := http.NewRequest("GET", r.addrs.HTTPURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+r.AdminToken())
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
