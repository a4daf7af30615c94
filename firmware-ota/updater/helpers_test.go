package updater

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// host is the device the tests pretend to be.
var host = manifest.Target{OS: "linux", Arch: "arm", Variant: "armv7", Board: "Raspberry Pi 4 Model B Rev 1.4"}

// firmware returns a fake binary of version v: a few hundred KiB so that
// downloads take many reads.
func firmware(v string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!outpost-fake-firmware %s\n", v)
	seed := sha256.Sum256([]byte(v))
	for b.Len() < 300<<10 {
		seed = sha256.Sum256(seed[:])
		b.Write(seed[:])
	}
	return b.Bytes()
}

// artifactServer serves artifacts over TLS with Range support, checks the
// bearer token, and can cut the first response in the middle.
type artifactServer struct {
	*httptest.Server
	token string

	mu       sync.Mutex
	files    map[string][]byte
	ranges   []string // Range header of each authorised request
	cutFirst bool
	cut      bool
	block    chan struct{} // if set, requests wait for it to close
	served   int64         // body bytes written
}

func newArtifactServer(t *testing.T) *artifactServer {
	s := &artifactServer{token: "dev.tok.en", files: map[string][]byte{}}
	s.Server = httptest.NewTLSServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *artifactServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	b, ok := s.files[r.URL.Path]
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	cut := s.cutFirst && !s.cut
	s.cut = s.cut || cut
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if cut {
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b[:len(b)/2])
		s.count(len(b) / 2)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection is cut
	}
	cw := &countingWriter{ResponseWriter: w, s: s}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
}

func (s *artifactServer) count(n int) {
	s.mu.Lock()
	s.served += int64(n)
	s.mu.Unlock()
}

func (s *artifactServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

type countingWriter struct {
	http.ResponseWriter
	s *artifactServer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.s.count(n)
	return n, err
}

// fakeReporter records reports; fail, if set, decides that one is not
// acknowledged.
type fakeReporter struct {
	mu      sync.Mutex
	got     []protocol.OTAStatus
	fail    func(protocol.OTAStatus) error
	changed chan struct{}
}

func newReporter() *fakeReporter { return &fakeReporter{changed: make(chan struct{}, 1)} }

func (r *fakeReporter) PublishStatus(ctx context.Context, st protocol.OTAStatus) error {
	if _, err := protocol.DecodeOTAStatus(mustJSON(st)); err != nil {
		return fmt.Errorf("invalid status: %w", err)
	}
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(st); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.got = append(r.got, st)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return ctx.Err()
}

func (r *fakeReporter) setFail(f func(protocol.OTAStatus) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *fakeReporter) reports() []protocol.OTAStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protocol.OTAStatus(nil), r.got...)
}

func (r *fakeReporter) last() protocol.OTAStatus {
	got := r.reports()
	if len(got) == 0 {
		return protocol.OTAStatus{}
	}
	return got[len(got)-1]
}

func (r *fakeReporter) states() []string {
	var out []string
	for _, s := range r.reports() {
		if len(out) == 0 || out[len(out)-1] != s.State {
			out = append(out, s.State)
		}
	}
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// env is one simulated gateway: a binary in a directory, a data dir, the
// release key, an artifact server and a reporter.
type env struct {
	t        *testing.T
	dir      string // state dir
	bin      string // the executable updates replace
	key      ed25519.PrivateKey
	keys     *manifest.Keyring
	srv      *artifactServer
	rep      *fakeReporter
	versions map[string][]byte // version → firmware bytes

	mu    sync.Mutex
	crash string // crash point armed (fires once)
	fired bool

	tweak func(*Config)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := manifest.NewKeyring(pub)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	e := &env{t: t, dir: filepath.Join(root, "data", "ota"), bin: filepath.Join(root, "bin", "outpost-gateway"),
		key: key, keys: keys, srv: newArtifactServer(t), rep: newReporter(),
		versions: map[string][]byte{}}
	if err := os.MkdirAll(filepath.Dir(e.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	e.install("1.0.0")
	return e
}

// install puts firmware v in place (the factory image).
func (e *env) install(v string) {
	e.t.Helper()
	if err := os.WriteFile(e.bin, e.fw(v), 0o755); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) fw(v string) []byte {
	if b, ok := e.versions[v]; ok {
		return b
	}
	b := firmware(v)
	e.versions[v] = b
	return b
}

// running returns the version of the binary in place; it fails the test
// if that is no complete firmware at all.
func (e *env) running() string {
	e.t.Helper()
	b, err := os.ReadFile(e.bin)
	if err != nil {
		e.t.Fatalf("binary in place: %v", err)
	}
	for v, fw := range e.versions {
		if bytes.Equal(b, fw) {
			return v
		}
	}
	e.t.Fatalf("the binary in place (%d bytes) is no complete version", len(b))
	return ""
}

// arm makes the first occurrence of point crash.
func (e *env) arm(point string) {
	e.mu.Lock()
	e.crash, e.fired = point, false
	e.mu.Unlock()
}

func (e *env) hook(point string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.crash == point && !e.fired {
		e.fired = true
		return true
	}
	return false
}

func (e *env) config(version string) Config {
	c := Config{
		StateDir:         e.dir,
		Keys:             e.keys,
		Version:          version,
		Host:             host,
		Installer:        FileInstaller{Path: e.bin, hook: e.installerHook},
		Reporter:         e.rep,
		HTTPClient:       e.srv.Client(),
		Token:            func() string { return e.srv.token },
		HealthTimeout:    5 * time.Second,
		ProgressInterval: time.Nanosecond, // checkpoint at every read
		RetryMin:         5 * time.Millisecond,
		RetryMax:         20 * time.Millisecond,
		Logger:           testLogger(e.t),
	}
	if e.tweak != nil {
		e.tweak(&c)
	}
	return c
}

func (e *env) installerHook(step string) error {
	if e.hook(step) {
		return fmt.Errorf("%w at %s", errCrashed, step)
	}
	return nil
}

// open starts "the process" of version v.
func (e *env) open(v string) *Updater {
	e.t.Helper()
	u, err := New(e.config(v))
	if err != nil {
		e.t.Fatal(err)
	}
	u.crashAt = e.hook
	return u
}

// build is what a noticeOpt may change before the notice is signed and
// published: the notice, the manifest, the bytes served, the signing key,
// and post, which may alter the signed envelope.
type build struct {
	n      *protocol.OTANotice
	m      *manifest.Manifest
	served []byte
	key    ed25519.PrivateKey
	post   func([]byte) []byte
}

type noticeOpt func(*build)

// notice returns a notice payload for version v signed with the release
// key, its artifact published on the server.
func (e *env) notice(rollout, v string, opts ...noticeOpt) []byte {
	e.t.Helper()
	art := e.fw(v)
	ver, err := manifest.ParseVersion(v)
	if err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(art)
	m := manifest.Manifest{Version: ver, Target: manifest.Target{OS: "linux", Arch: "arm", Variant: "armv6", Board: "Raspberry Pi 4"},
		Size: int64(len(art)), SHA256: hex.EncodeToString(sum[:])}
	n := protocol.OTANotice{V: protocol.Version, Rollout: rollout, Release: v, Time: time.Now().UnixMilli()}
	b := build{n: &n, m: &m, served: art, key: e.key}
	for _, o := range opts {
		o(&b)
	}
	signed, err := manifest.SignManifest(b.key, m)
	if err != nil {
		e.t.Fatal(err)
	}
	if b.post != nil {
		signed = b.post(signed)
	}
	n.Manifest = signed
	path := "/api/v1/ota/artifacts/" + m.SHA256
	e.srv.mu.Lock()
	e.srv.files[path] = b.served
	e.srv.mu.Unlock()
	if n.URL == "" {
		n.URL = e.srv.URL + path
	}
	return mustJSON(n)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// runner runs an Updater in the background.
type runner struct {
	u      *Updater
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned err
	err    error
}

func start(u *Updater) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{u: u, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = u.Run(ctx); close(r.done) }()
	return r
}

// stop shuts the updater down and returns what Run returned.
func (r *runner) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// wait returns what Run returned, within d.
func (r *runner) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(d):
		_ = r.stop()
		t.Fatalf("Run did not return within %v; state %+v", d, r.u.State())
		return nil
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled waits until u's state is terminal and reported.
func settled(t *testing.T, r *runner, d time.Duration) State {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := r.u.State()
		if st.Phase.Terminal() && st.Report == nil {
			return st
		}
		select {
		case <-r.done:
			t.Fatalf("Run returned %v in state %+v", r.err, st)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled within %v: %+v", d, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// boot plays supervisor: starts the binary in place until an update ends
// (restarting after each ErrRestart) and returns the version then running
// and its state. Every start checks that a complete binary is in place.
func (e *env) boot(t *testing.T) (string, State) {
	t.Helper()
	for i := 0; i < 8; i++ {
		v := e.running()
		if st, done := e.bootOnce(t, v); done {
			return v, st
		}
	}
	t.Fatal("still restarting after 8 starts")
	return "", State{}
}

// bootOnce runs version v until its update ends (done) or it exits.
func (e *env) bootOnce(t *testing.T, v string) (State, bool) {
	t.Helper()
	r := start(e.open(v))
	deadline := time.After(20 * time.Second)
	for {
		st := r.u.State()
		if st.Phase.Terminal() && st.Report == nil {
			if err := r.stop(); err != nil && !errors.Is(err, ErrRestart) {
				t.Fatalf("Run: %v", err)
			}
			return st, true
		}
		select {
		case <-r.done:
			if errors.Is(r.err, ErrRestart) || errors.Is(r.err, errCrashed) {
				return st, false
			}
			t.Fatalf("version %s: Run returned %v in %+v", v, r.err, st)
		case <-deadline:
			_ = r.stop()
			t.Fatalf("version %s: not settled: %+v", v, st)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
