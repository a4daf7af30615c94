package updater

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// The whole update: notice, download, verify, install, restart, trial,
// healthy; every state change reported, the previous binary kept.
func TestUpdateSucceeds(t *testing.T) {
	e := newEnv(t)
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatalf("Run = %v, want ErrRestart", err)
	}
	if v := e.running(); v != "2.0.0" {
		t.Fatalf("binary in place is %s", v)
	}
	if prev, _ := os.ReadFile(e.bin + ".prev"); !bytes.Equal(prev, e.fw("1.0.0")) {
		t.Fatal("the previous binary was not kept as .prev")
	}
	if fi, err := os.Stat(e.bin); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v, %v", fi.Mode(), err)
	}
	if _, err := os.Stat(e.bin + ".new"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staged binary left behind: %v", err)
	}
	if st := r.u.State(); st.Phase != Restarting || st.From != "1.0.0" || st.Release != "2.0.0" {
		t.Fatalf("state before the restart: %+v", st)
	}

	v, st := e.boot(t)
	if v != "2.0.0" || st.Phase != Succeeded || st.Rollout != "r1" {
		t.Fatalf("after the restart: %s, %+v", v, st)
	}
	last := e.rep.last()
	if last.State != protocol.OTASucceeded || last.Firmware != "2.0.0" || last.Rollout != "r1" || last.Release != "2.0.0" {
		t.Fatalf("last report %+v", last)
	}
	states := e.rep.states()
	for _, want := range []string{protocol.OTADownloading, protocol.OTASucceeded} {
		if !slices.Contains(states, want) {
			t.Errorf("no %s report in %v", want, states)
		}
	}
	for _, s := range e.rep.reports() {
		if s.State == protocol.OTADownloading && (s.Total != int64(len(e.fw("2.0.0"))) || s.Bytes > s.Total) {
			t.Errorf("download progress %d/%d", s.Bytes, s.Total)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, "download.part")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("download kept after success: %v", err)
	}
}

// A connection cut in the middle of the download is resumed with a Range
// request; nothing is fetched twice.
func TestDownloadResumesAfterCut(t *testing.T) {
	e := newEnv(t)
	e.srv.cutFirst = true
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatalf("Run = %v (state %+v)", err, r.u.State())
	}
	reqs := e.srv.requests()
	size := int64(len(e.fw("2.0.0")))
	if len(reqs) != 2 || reqs[0] != "" || !strings.HasPrefix(reqs[1], "bytes=") || reqs[1] == "bytes=0-" {
		t.Fatalf("requests' Range headers: %q", reqs)
	}
	if e.srv.served > size+size/10 {
		t.Fatalf("served %d bytes for a %d-byte artifact", e.srv.served, size)
	}
	if v := e.running(); v != "2.0.0" {
		t.Fatalf("installed %s", v)
	}
}

// After a crash only the bytes the state file says were synced are
// trusted: a garbage tail (as a power cut may leave) is cut off.
func TestResumeTrustsOnlySyncedBytes(t *testing.T) {
	e := newEnv(t)
	e.srv.cutFirst = true
	e.arm("progress")
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, errCrashed) {
		t.Fatalf("Run = %v", err)
	}
	st, err := ReadState(e.dir)
	if err != nil || st.Phase != Downloading || st.Bytes <= 0 {
		t.Fatalf("state after the crash: %+v, %v", st, err)
	}
	f, err := os.OpenFile(filepath.Join(e.dir, "download.part"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{0}, 4096)); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	v, st := e.boot(t)
	if v != "2.0.0" || st.Phase != Succeeded {
		t.Fatalf("after resuming: %s %+v", v, st)
	}
}

// Notices that must not be installed are refused with the reason, before
// anything is downloaded; the binary in place is untouched.
func TestRefusals(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		running string
		release string
		opts    []noticeOpt
		noKeys  bool
		host    string // variant
		reason  string
	}{
		{name: "wrong signature", running: "1.0.0", release: "2.0.0", reason: "untrusted key",
			opts: []noticeOpt{func(b *build) { b.key = otherKey }}},
		{name: "tampered manifest", running: "1.0.0", release: "2.0.0", reason: "bad manifest signature",
			opts: []noticeOpt{func(b *build) { b.post = alterPayload }}},
		{name: "wrong target", running: "1.0.0", release: "2.0.0", reason: "target mismatch",
			opts: []noticeOpt{func(b *build) { b.m.Target.Arch = "arm64" }}},
		{name: "needs a newer arm", running: "1.0.0", release: "2.0.0", host: "armv6", reason: "needs armv7",
			opts: []noticeOpt{func(b *build) { b.m.Target.Variant = "armv7" }}},
		{name: "lower version", running: "1.5.0", release: "1.4.9", reason: "lower than the running 1.5.0"},
		{name: "pre-release below release", running: "2.0.0", release: "2.0.0-rc.1", reason: "lower than"},
		{name: "manifest for another version", running: "1.0.0", release: "2.0.0", reason: "manifest is for version 3.0.0",
			opts: []noticeOpt{func(b *build) { b.m.Version, _ = manifest.ParseVersion("3.0.0") }}},
		{name: "no release key", running: "1.0.0", release: "2.0.0", noKeys: true, reason: "no release key configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.install(tt.running)
			e.tweak = func(c *Config) {
				if tt.noKeys {
					c.Keys = nil
				}
				if tt.host != "" {
					c.Host.Variant = tt.host
				}
			}
			r := start(e.open(tt.running))
			r.u.Notice(e.notice("r1", tt.release, tt.opts...))
			st := settled(t, r, 5*time.Second)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			if st.Phase != Failed || !st.Refused || !strings.Contains(st.Reason, tt.reason) {
				t.Fatalf("state %+v, want failed with %q", st, tt.reason)
			}
			if last := e.rep.last(); last.State != protocol.OTAFailed || last.Reason != st.Reason || last.Firmware != tt.running {
				t.Fatalf("report %+v", last)
			}
			if v := e.running(); v != tt.running {
				t.Fatalf("binary in place is %s", v)
			}
			if reqs := e.srv.requests(); len(reqs) != 0 {
				t.Fatalf("downloaded despite the refusal: %q", reqs)
			}
		})
	}
}

// alterPayload changes the digest inside a signed envelope, keeping the
// signature: what an attacker who cannot sign would do.
func alterPayload(signed []byte) []byte {
	var env map[string]any
	if err := json.Unmarshal(signed, &env); err != nil {
		panic(err)
	}
	payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		panic(err)
	}
	m["sha256"] = strings.Repeat("ab", 32)
	env["payload"] = base64.StdEncoding.EncodeToString(mustJSON(m))
	return mustJSON(env)
}

// A downgrade is installed when the rollout allows it; the running version
// itself is "succeeded" at once.
func TestDowngradeAndSameVersion(t *testing.T) {
	e := newEnv(t)
	e.install("2.0.0")
	r := start(e.open("2.0.0"))
	r.u.Notice(e.notice("r-same", "2.0.0"))
	st := settled(t, r, 5*time.Second)
	if st.Phase != Succeeded || st.Rollout != "r-same" {
		t.Fatalf("same version: %+v", st)
	}
	r.u.Notice(e.notice("r-down", "1.0.0", func(b *build) { b.n.AllowDowngrade = true }))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatalf("downgrade: Run = %v, %+v", err, r.u.State())
	}
	if v, st := e.boot(t); v != "1.0.0" || st.Phase != Succeeded {
		t.Fatalf("after the downgrade: %s %+v", v, st)
	}
}

// A tampered artifact (right size, wrong bytes) fails with a digest error
// and installs nothing; a retry would download it again.
func TestTamperedArtifactIsNotInstalled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(b []byte) []byte
		reason string
	}{
		{"flipped byte", func(b []byte) []byte { c := slices.Clone(b); c[len(c)/3] ^= 1; return c }, "SHA-256 mismatch"},
		{"short", func(b []byte) []byte { return b[:len(b)-1] }, "serves"},
		{"long", func(b []byte) []byte { return append(slices.Clone(b), 'x') }, "serves"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := start(e.open("1.0.0"))
			r.u.Notice(e.notice("r1", "2.0.0", func(b *build) { b.served = tc.tamper(b.served) }))
			st := settled(t, r, 10*time.Second)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			if st.Phase != Failed || st.Refused || !strings.Contains(st.Reason, tc.reason) {
				t.Fatalf("state %+v, want failed with %q", st, tc.reason)
			}
			if v := e.running(); v != "1.0.0" {
				t.Fatalf("binary in place is %s", v)
			}
			for _, p := range []string{e.bin + ".new", e.bin + ".prev", filepath.Join(e.dir, "download.part")} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind (%v)", p, err)
				}
			}
		})
	}
}

// The same notice again (the retained one, after the restart or a
// reconnection) reports the outcome again and installs nothing.
func TestNoticeIsIdempotent(t *testing.T) {
	e := newEnv(t)
	payload := e.notice("r1", "2.0.0")
	r := start(e.open("1.0.0"))
	r.u.Notice(payload)
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	if v, st := e.boot(t); v != "2.0.0" || st.Phase != Succeeded {
		t.Fatalf("%s %+v", v, st)
	}
	reqs, reports := len(e.srv.requests()), len(e.rep.reports())
	r = start(e.open("2.0.0"))
	defer func() { _ = r.stop() }()
	r.u.Notice(payload)
	waitFor(t, 5*time.Second, "succeeded reported again", func() bool { return len(e.rep.reports()) > reports })
	if last := e.rep.last(); last.State != protocol.OTASucceeded || last.Firmware != "2.0.0" {
		t.Fatalf("re-report %+v", last)
	}
	if got := len(e.srv.requests()); got != reqs {
		t.Fatalf("downloaded again: %d requests", got-reqs)
	}
	if st := r.u.State(); st.Phase != Succeeded {
		t.Fatalf("state %+v", st)
	}
}

// A withdrawn or superseded notice stops the download in progress.
func TestWithdrawAndSupersede(t *testing.T) {
	e := newEnv(t)
	e.srv.block = make(chan struct{})
	r := start(e.open("1.0.0"))
	defer func() { _ = r.stop() }()
	r.u.Notice(e.notice("r1", "2.0.0"))
	waitFor(t, 5*time.Second, "download started", func() bool { return len(e.srv.requests()) > 0 })
	r.u.Notice(e.notice("r1", "2.0.0")) // the same again: ignored
	r.u.Notice(nil)
	st := settled(t, r, 5*time.Second)
	if st.Phase != Failed || st.Reason != "withdrawn by the hub" {
		t.Fatalf("after the withdrawal: %+v", st)
	}

	r.u.Notice(e.notice("r2", "2.0.0"))
	waitFor(t, 5*time.Second, "second download started", func() bool { return r.u.State().Rollout == "r2" })
	r.u.Notice(e.notice("r3", "3.0.0"))
	waitFor(t, 5*time.Second, "r3 accepted", func() bool { return r.u.State().Rollout == "r3" })
	close(e.srv.block)
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	var sawSuperseded bool
	for _, s := range e.rep.reports() {
		sawSuperseded = sawSuperseded || (s.Rollout == "r2" && s.State == protocol.OTAFailed && strings.Contains(s.Reason, "superseded"))
	}
	if !sawSuperseded {
		t.Fatalf("r2 not reported superseded: %+v", e.rep.reports())
	}
	if v := e.running(); v != "3.0.0" {
		t.Fatalf("installed %s", v)
	}
}

// Reports made while the hub is unreachable stay in the state file and go
// out once it is back (the newest one).
func TestReportsWaitForTheHub(t *testing.T) {
	e := newEnv(t)
	e.rep.setFail(func(protocol.OTAStatus) error { return errors.New("offline") })
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "0.9.0"))
	waitFor(t, 5*time.Second, "refused", func() bool { return r.u.State().Phase == Failed })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(e.dir)
	if err != nil || st.Report == nil || st.Report.State != protocol.OTAFailed {
		t.Fatalf("unreported status not kept: %+v, %v", st, err)
	}
	e.rep.setFail(nil)
	r = start(e.open("1.0.0"))
	st = settled(t, r, 5*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if last := e.rep.last(); last.State != protocol.OTAFailed || last.Rollout != "r1" || last.Firmware != "1.0.0" {
		t.Fatalf("delivered %+v", last)
	}
	if st.Report != nil {
		t.Fatal("acknowledged report still pending")
	}
}

// A new version that is not healthy in time is rolled back; the old
// version then reports why.
func TestRollbackOnHealthTimeout(t *testing.T) {
	e := newEnv(t)
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	e.rep.setFail(func(st protocol.OTAStatus) error {
		if st.Firmware == "2.0.0" {
			return errors.New("hub unreachable")
		}
		return nil
	})
	e.tweak = func(c *Config) { c.HealthTimeout = 300 * time.Millisecond }
	began := time.Now()
	r = start(e.open("2.0.0"))
	if st := r.u.State(); st.Phase != Trial || st.TrialBoots != 1 {
		t.Fatalf("new version started in %+v", st)
	}
	if err := r.wait(t, 5*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Fatalf("rolled back after %v, before the health timeout", d)
	}
	if v := e.running(); v != "1.0.0" {
		t.Fatalf("after the rollback %s is in place", v)
	}
	v, st := e.boot(t)
	if v != "1.0.0" || st.Phase != RolledBack || !strings.Contains(st.Reason, "not healthy within 300ms") ||
		!strings.Contains(st.Reason, "hub unreachable") {
		t.Fatalf("after the rollback: %s %+v", v, st)
	}
	if last := e.rep.last(); last.State != protocol.OTARolledBack || last.Firmware != "1.0.0" || last.Reason != st.Reason {
		t.Fatalf("report %+v", last)
	}
	// The retained notice again: reported, not installed again.
	n := len(e.srv.requests())
	r = start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	st = settled(t, r, 5*time.Second)
	_ = r.stop()
	if st.Phase != RolledBack || len(e.srv.requests()) != n {
		t.Fatalf("retained notice after the rollback: %+v, %d new requests", st, len(e.srv.requests())-n)
	}
}

// A new version that dies before it became healthy is rolled back at its
// next start (no supervisor needed: the trial boot counter).
func TestRollbackAfterCrashBeforeHealthy(t *testing.T) {
	e := newEnv(t)
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	e.rep.setFail(func(protocol.OTAStatus) error { return errors.New("not yet") })
	_ = e.open("2.0.0") // starts, counts its trial boot, "crashes" before Run
	if st, _ := ReadState(e.dir); st.Phase != Trial || st.TrialBoots != 1 {
		t.Fatalf("state %+v", st)
	}
	u := e.open("2.0.0") // the second start rolls back
	if v := e.running(); v != "1.0.0" {
		t.Fatalf("%s in place after the second start", v)
	}
	if err := start(u).wait(t, 5*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatalf("Run = %v", err)
	}
	e.rep.setFail(nil)
	v, st := e.boot(t)
	if v != "1.0.0" || st.Phase != RolledBack || !strings.Contains(st.Reason, "stopped before it became healthy") {
		t.Fatalf("%s %+v", v, st)
	}
}

// A clean shutdown during the trial does not count as a failed start.
func TestCleanShutdownInTrialDoesNotCount(t *testing.T) {
	e := newEnv(t)
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	e.rep.setFail(func(protocol.OTAStatus) error { return errors.New("offline") })
	r = start(e.open("2.0.0"))
	time.Sleep(20 * time.Millisecond)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadState(e.dir); st.Phase != Trial || st.TrialBoots != 0 {
		t.Fatalf("after a clean stop: %+v", st)
	}
	e.rep.setFail(nil)
	if v, st := e.boot(t); v != "2.0.0" || st.Phase != Succeeded {
		t.Fatalf("%s %+v", v, st)
	}
}

// A crash at any step ends with the old or the new version running, never
// neither, and the update finished (or rolled back) after the restart.
func TestCrashAtEveryStep(t *testing.T) {
	tests := []struct {
		point      string
		wantV      string
		wantPhase  Phase
		wantReason string
	}{
		{"accepted", "2.0.0", Succeeded, ""},
		{"progress", "2.0.0", Succeeded, ""},
		{"downloaded", "2.0.0", Succeeded, ""},
		{"staged", "2.0.0", Succeeded, ""},
		{"installing", "2.0.0", Succeeded, ""},
		{"prev-kept", "2.0.0", Succeeded, ""},
		{"swapped", "2.0.0", Succeeded, ""},
		{"restarting", "2.0.0", Succeeded, ""},
		// A new version that dies in its trial is not trusted.
		{"trial", "1.0.0", RolledBack, "stopped before it became healthy"},
		{"healthy", "1.0.0", RolledBack, "stopped before it became healthy"},
	}
	for _, tt := range tests {
		t.Run(tt.point, func(t *testing.T) {
			e := newEnv(t)
			e.arm(tt.point)
			r := start(e.open("1.0.0"))
			r.u.Notice(e.notice("r1", "2.0.0"))
			err := r.wait(t, 10*time.Second)
			if !errors.Is(err, errCrashed) && !errors.Is(err, ErrRestart) {
				t.Fatalf("Run = %v", err)
			}
			v, st := e.boot(t)
			if !e.fired {
				t.Fatalf("crash point %s never reached", tt.point)
			}
			if v != tt.wantV || st.Phase != tt.wantPhase || !strings.Contains(st.Reason, tt.wantReason) {
				t.Fatalf("ended with %s running, state %+v; want %s %s", v, st, tt.wantV, tt.wantPhase)
			}
			if last := e.rep.last(); last.State != string(tt.wantPhase) || last.Firmware != tt.wantV {
				t.Fatalf("last report %+v", last)
			}
		})
	}
}

// A crash right after the rollback renamed the binary back, before the
// state said so, still ends rolled back.
func TestCrashDuringRollback(t *testing.T) {
	e := newEnv(t)
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "2.0.0"))
	if err := r.wait(t, 10*time.Second); !errors.Is(err, ErrRestart) {
		t.Fatal(err)
	}
	e.rep.setFail(func(st protocol.OTAStatus) error {
		if st.Firmware == "2.0.0" {
			return errors.New("unreachable")
		}
		return nil
	})
	e.tweak = func(c *Config) { c.HealthTimeout = 50 * time.Millisecond }
	e.arm("rolled-back")
	if err := start(e.open("2.0.0")).wait(t, 5*time.Second); !errors.Is(err, errCrashed) {
		t.Fatalf("Run = %v", err)
	}
	if st, _ := ReadState(e.dir); st.Phase != Trial {
		t.Fatalf("state %+v", st)
	}
	v, st := e.boot(t)
	if v != "1.0.0" || st.Phase != RolledBack {
		t.Fatalf("%s %+v", v, st)
	}
}

// The state file: written atomically with its schema, read strictly; a
// corrupt one is moved aside instead of stopping the gateway.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	st, err := ReadState(dir)
	if err != nil || st.Phase != Idle {
		t.Fatalf("missing file: %+v, %v", st, err)
	}
	want := State{Phase: Downloading, Seq: 3, Rollout: "r", Release: "2.0.0", From: "1.0.0", Total: 10, Bytes: 5,
		Changed: time.UnixMilli(1_700_000_000_000).UTC(), Report: &protocol.OTAStatus{V: 1, Rollout: "r", State: "downloading"}}
	if err := WriteState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(dir)
	want.Schema = StateSchema
	if err != nil || got.Phase != want.Phase || got.Bytes != 5 || got.Report == nil || !got.Changed.Equal(want.Changed) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, StateFile))
	if !bytes.Contains(b, []byte(`"schema": 1`)) {
		t.Fatalf("no schema in %s", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	for name, bad := range map[string]string{
		"schema":  `{"schema": 2, "phase": "idle"}`,
		"phase":   `{"schema": 1, "phase": "exploded"}`,
		"garbage": `{"schema": 1, "phase": "idle"} trailing`,
		"empty":   ``,
		"nothing": `{"schema": 1, "phase": "trial"}`,
	} {
		if _, err := decodeState([]byte(bad)); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := New(Config{StateDir: dir, Version: "1.0.0", Installer: FileInstaller{Path: filepath.Join(dir, "bin")}, Reporter: newReporter()})
	if err != nil {
		t.Fatal(err)
	}
	if u.State().Phase != Idle {
		t.Fatalf("state %+v", u.State())
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile+".bad")); err != nil {
		t.Fatalf("corrupt file not kept aside: %v", err)
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"schema":1,"phase":"trial","rollout":"r","release":"2.0.0","trial_boots":1}`))
	f.Add([]byte(`{"schema":1,"phase":"idle"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		if !st.Phase.valid() || st.Schema != StateSchema {
			t.Fatalf("accepted %+v", st)
		}
		_ = st.Status()
	})
}

func TestParseContentRange(t *testing.T) {
	for in, want := range map[string][3]int64{
		"bytes 100-199/200": {100, 200, 1},
		"bytes 0-0/*":       {0, -1, 1},
		"bytes -1-5/10":     {0, 0, 0},
		"bits 1-2/3":        {0, 0, 0},
		"bytes 5/10":        {0, 0, 0},
		"bytes 1-2/x":       {0, 0, 0},
	} {
		s, tot, ok := parseContentRange(in)
		if ok != (want[2] == 1) || ok && (s != want[0] || tot != want[1]) {
			t.Errorf("%q = %d %d %v", in, s, tot, ok)
		}
	}
}

// The last status of an earlier rollout is not lost when a newer rollout
// reports while the hub is unreachable: both go out, oldest first.
func TestEarlierRolloutsStatusIsKept(t *testing.T) {
	e := newEnv(t)
	e.rep.setFail(func(protocol.OTAStatus) error { return errors.New("offline") })
	r := start(e.open("1.0.0"))
	r.u.Notice(e.notice("r1", "0.9.0"))
	waitFor(t, 5*time.Second, "r1 refused", func() bool { return r.u.State().Rollout == "r1" })
	r.u.Notice(e.notice("r2", "0.8.0"))
	waitFor(t, 5*time.Second, "r2 refused", func() bool { return r.u.State().Rollout == "r2" })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	st, _ := ReadState(e.dir)
	if len(st.Backlog) != 1 || st.Backlog[0].Rollout != "r1" || st.Report == nil || st.Report.Rollout != "r2" {
		t.Fatalf("state %+v", st)
	}
	e.rep.setFail(nil)
	r = start(e.open("1.0.0"))
	waitFor(t, 5*time.Second, "both delivered", func() bool { return len(e.rep.reports()) == 2 })
	_ = r.stop()
	if got := e.rep.reports(); got[0].Rollout != "r1" || got[1].Rollout != "r2" || got[0].State != protocol.OTAFailed {
		t.Fatalf("reports %+v", got)
	}
	if st, _ := ReadState(e.dir); len(st.Backlog) != 0 || st.Report != nil {
		t.Fatalf("acknowledged reports still kept: %+v", st)
	}
}
