package e2e

// The OTA end-to-end test (issue 4, invariant 6): gateway binaries built
// as v1, v2, and newer versions that crash at start or never become
// healthy (buildinfo.TestFault), each gateway running from its
// own copy of v1 under its supervisor, one hub trusting the release keys,
// releases signed and uploaded with outpostctl, rollouts created with it.
// Artifact downloads go through a proxy the test can stall.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/updater"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/internal/protocol"
)

const buildinfoPkg = "github.com/outpost-iot/outpost/internal/buildinfo"

// Versions of the gateway builds.
const (
	v1     = "1.0.0" // what every gateway starts with
	v2     = "2.0.0" // the good update
	vCrash = "2.1.0" // built with TestFault=crash-at-start
	vSick  = "2.2.0" // built with TestFault=unhealthy
)

// healthTimeout is the gateways' ota.health_timeout (but for the one
// that runs the unhealthy build).
const healthTimeout = 20 * time.Second

// otaRig is the shared part: builds, keys, a hub trusting keys a and b.
type otaRig struct {
	h    *hub
	px   *proxy            // between the gateways and the hub's HTTPS API (artifact downloads)
	bins map[string]string // version → gateway build
	keys string            // keys/{a,b,c}/release.{key,pub}: the gateways trust a, the hub a and b
	work string            // artifacts being signed
	host string            // this host's os/arch
	v2   sync.Once         // the good v2 uploaded
}

func TestOTA(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	r := newOTARig(t)
	// Scenarios with their own devices and releases run side by side; the
	// kill -9 ones stall the artifact proxy, so they come after, alone.
	t.Run("fleet", func(t *testing.T) {
		for _, s := range []struct {
			name string
			f    func(*testing.T)
		}{
			{"rollout in waves updates every gateway", r.testRollout},
			{"upload refuses tampered and wrongly signed releases", r.testUploadRefusals},
			{"gateway refuses untrusted key or wrong target or tampered artifact", r.testGatewayRefusals},
			{"crash at start rolls back and failures pause the rollout", r.testCrashRollback},
			{"unhealthy version rolls itself back", r.testUnhealthy},
			{"offline gateway updated when it comes back", r.testOffline},
		} {
			t.Run(s.name, func(t *testing.T) { t.Parallel(); s.f(t) })
		}
	})
	t.Run("kill -9 during download resumes", r.testKillDuringDownload)
	t.Run("kill -9 during install ends in one version", r.testKillDuringInstall)
}

func newOTARig(t *testing.T) *otaRig {
	dir := t.TempDir()
	r := &otaRig{bins: map[string]string{}, keys: filepath.Join(dir, "keys"), work: filepath.Join(dir, "work"),
		host: runtime.GOOS + "/" + runtime.GOARCH}
	if err := os.MkdirAll(r.work, 0o755); err != nil {
		t.Fatal(err)
	}
	// The gateway builds, linked one after the other (the packages are
	// compiled once; parallel links only contend on two cores).
	builds := []struct{ version, fault string }{{v1, ""}, {v2, ""}, {vCrash, "crash-at-start"}, {vSick, "unhealthy"}}
	for _, b := range builds {
		out := filepath.Join(dir, "outpost-gateway-"+b.version)
		r.bins[b.version] = out
		if err := buildGateway(out, b.version, b.fault); err != nil {
			t.Fatal(err)
		}
	}

	mqttAddr, httpAddr := freePort(t), freePort(t)
	r.px = newProxy(t, httpAddr)
	ctl := &hub{} // keygen needs no hub
	for _, k := range []string{"a", "b", "c"} {
		if out, err := ctl.tryCtl("ota", "keygen", "--out", filepath.Join(r.keys, k)); err != nil {
			t.Fatalf("ota keygen: %v\n%s", err, out)
		}
	}
	hubDir := filepath.Join(dir, "hub")
	cfg := filepath.Join(dir, "hub.yaml")
	y := fmt.Sprintf("ota:\n  release_keys: [%s, %s]\n  public_url: https://%s\n", r.pub("a"), r.pub("b"), r.px.addr())
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	r.h = startHub(t, hubDir, mqttAddr, httpAddr, "--config", cfg)
	// The hub is built with -race: a race it reports fails the test.
	t.Cleanup(func() {
		out := r.h.p.out.String()
		if i := strings.Index(out, "WARNING: DATA RACE"); i >= 0 {
			t.Errorf("the hub reported a data race:\n%s", out[i:min(len(out), i+6000)])
		}
	})
	return r
}

func buildGateway(out, version, fault string) error {
	ldflags := "-s -w -X " + buildinfoPkg + ".Version=" + version
	if fault != "" {
		ldflags += " -X " + buildinfoPkg + ".TestFault=" + fault
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "../cmd/outpost-gateway")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build gateway %s: %v\n%s", version, err, b)
	}
	return nil
}

func (r *otaRig) pub(key string) string { return filepath.Join(r.keys, key, "release.pub") }

// release copies the build of version `from` (with tail appended, which
// leaves an ELF runnable and makes the digest unique), signs it as
// version with key for target, and returns its path.
func (r *otaRig) release(t *testing.T, from, version, key, target, tail string) string {
	t.Helper()
	b, err := os.ReadFile(r.bins[from])
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(r.work, fmt.Sprintf("outpost-gateway-%s-%s", version, strings.ReplaceAll(target, "/", "-")))
	if err := os.WriteFile(p, append(b, tail...), 0o755); err != nil {
		t.Fatal(err)
	}
	r.h.ctl(t, "ota", "sign", "--key", filepath.Join(r.keys, key, "release.key"), "--version", version, "--target", target, p)
	return p
}

// upload stores a release on the hub and returns its digest.
func (r *otaRig) upload(t *testing.T, artifact string) string {
	t.Helper()
	var resp ota.UploadResponse
	if err := json.Unmarshal([]byte(r.h.ctl(t, "ota", "upload", "--json", artifact)), &resp); err != nil {
		t.Fatal(err)
	}
	return resp.Release.SHA256
}

// uploadV2 uploads the good v2 once; several scenarios roll it out.
func (r *otaRig) uploadV2(t *testing.T) {
	r.v2.Do(func() { r.upload(t, r.release(t, v2, v2, "a", r.host, "")) })
}

// createRollout runs outpostctl ota rollout create and returns the id.
func (r *otaRig) createRollout(t *testing.T, args ...string) string {
	t.Helper()
	out := r.h.ctl(t, append([]string{"ota", "rollout", "create"}, args...)...)
	return strings.TrimSpace(out)
}

func (r *otaRig) rollout(t *testing.T, id string) ota.Rollout {
	t.Helper()
	var ro ota.Rollout
	r.h.get(t, "/api/v1/ota/rollouts/"+id, &ro)
	return ro
}

func deviceIn(ro ota.Rollout, device string) ota.DeviceStatus {
	for _, d := range ro.Devices {
		if d.Device == device {
			return d
		}
	}
	return ota.DeviceStatus{}
}

// waitDevice waits until device reaches state in rollout id; another final
// state ends the wait at once.
func (r *otaRig) waitDevice(t *testing.T, id, device, state string, within time.Duration) ota.DeviceStatus {
	t.Helper()
	var d ota.DeviceStatus
	waitFor(t, within, device+" "+state+" in "+id, func() bool {
		var ro ota.Rollout
		if r.h.tryGet("/api/v1/ota/rollouts/"+id, &ro) != nil {
			return false
		}
		d = deviceIn(ro, device)
		if d.State != state && final(d.State) {
			t.Fatalf("%s ended %s in %s, want %s: %+v", device, d.State, id, state, d)
		}
		return d.State == state
	})
	return d
}

func final(state string) bool {
	return state == protocol.OTASucceeded || state == protocol.OTAFailed || state == protocol.OTARolledBack
}

func (r *otaRig) waitRollout(t *testing.T, id, state string, within time.Duration) ota.Rollout {
	t.Helper()
	var ro ota.Rollout
	waitFor(t, within, "rollout "+id+" "+state, func() bool {
		return r.h.tryGet("/api/v1/ota/rollouts/"+id, &ro) == nil && ro.State == state
	})
	return ro
}

// otaGW is a gateway running from its own copy of a build, under its
// supervisor, trusting release key a.
type otaGW struct {
	*gw
	bin string
}

func (r *otaRig) gateway(t *testing.T, id string, health time.Duration) *otaGW {
	t.Helper()
	g := &otaGW{gw: newGateway(t, r.h, id, r.h.mqtt)}
	g.bin = filepath.Join(g.dir, "bin", "outpost-gateway")
	b, err := os.ReadFile(r.bins[v1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(g.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(g.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "release_pubkey: %s\nota: {health_timeout: %v}\n", r.pub("a"), health)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// run starts the supervisor (outpost-gateway run) from the gateway's
// binary, in a process group of its own that its worker joins.
func (g *otaGW) run(t *testing.T) {
	t.Helper()
	cmd := exec.Command(g.bin, "run", "--config", g.cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g.p = startCmd(t, cmd)
	p := g.p
	t.Cleanup(func() { killGroup(t, p) }) // before startCmd's: the worker too
}

// killGroup kills the supervisor and its worker at once, with one signal
// to their process group (a power cut), and waits until both are gone.
func killGroup(t *testing.T, p *proc) {
	t.Helper()
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done: // stopped, or killed before: the group may be gone and its id reused
	default:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	waitFor(t, 10*time.Second, "killed processes gone", func() bool { return !groupAlive(pgid) })
}

// groupAlive reports whether a live (not zombie) process is in group pgid.
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // state ppid pgrp ...
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// worker returns the pid of the supervisor's worker.
func (g *otaGW) worker(t *testing.T) int {
	t.Helper()
	var pid int
	waitFor(t, 10*time.Second, g.id+" worker", func() bool {
		tree := processTree(g.p.cmd.Process.Pid)
		if len(tree) < 2 {
			return false
		}
		pid = tree[1]
		return true
	})
	return pid
}

func (g *otaGW) stateDir() string { return filepath.Join(g.dir, "data", "ota") }

// state reads the gateway's persisted update state.
func (g *otaGW) state(t *testing.T) updater.State {
	t.Helper()
	st, err := updater.ReadState(g.stateDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// binVersion runs "BIN version" and returns the version it prints.
func binVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "outpost-gateway" {
		t.Fatalf("%s version: %q", bin, out)
	}
	return f[1]
}

type hubDevice struct {
	State    string `json:"state"`
	Firmware string `json:"firmware"`
	LastSeq  uint64 `json:"last_seq"`
	LastHBMS int64  `json:"last_heartbeat"`
}

func (r *otaRig) device(id string) (hubDevice, error) {
	var d hubDevice
	err := r.h.tryGet("/api/v1/devices/"+id, &d)
	return d, err
}

// waitOnline waits until the hub has the device online, reporting firmware
// fw in a heartbeat sent after since.
func (r *otaRig) waitOnline(t *testing.T, id, fw string, since time.Time) hubDevice {
	t.Helper()
	var d hubDevice
	waitFor(t, 30*time.Second, id+" online with firmware "+fw, func() bool {
		var err error
		d, err = r.device(id)
		return err == nil && d.State == "online" && d.Firmware == fw && d.LastHBMS > since.UnixMilli()
	})
	return d
}

// checkRuns asserts what runs: the binary in place is version, the
// worker runs that very file (not a replaced one), the hub sees the
// device online with that firmware, and readings keep arriving.
func (r *otaRig) checkRuns(t *testing.T, g *otaGW, version string) {
	t.Helper()
	if got := binVersion(t, g.bin); got != version {
		t.Errorf("%s: binary in place is %s, want %s", g.id, got, version)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", g.worker(t)))
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.EvalSymlinks(g.bin); exe != want {
		t.Errorf("%s: the worker runs %q, want the binary in place %s", g.id, exe, g.bin)
	}
	d := r.waitOnline(t, g.id, version, time.Now())
	waitFor(t, 20*time.Second, g.id+" delivering readings", func() bool {
		n, err := r.device(g.id)
		return err == nil && n.LastSeq > d.LastSeq+10
	})
}

// startAll starts the gateways and waits until each is online with v1.
func (r *otaRig) startAll(t *testing.T, ids ...string) []*otaGW {
	t.Helper()
	return r.startAllHealth(t, healthTimeout, ids...)
}

func (r *otaRig) startAllHealth(t *testing.T, health time.Duration, ids ...string) []*otaGW {
	t.Helper()
	since := time.Now()
	var gws []*otaGW
	for _, id := range ids {
		g := r.gateway(t, id, health)
		g.run(t)
		gws = append(gws, g)
	}
	for _, id := range ids {
		r.waitOnline(t, id, v1, since)
	}
	return gws
}

// testRollout: a rollout in two waves updates three gateways to v2.
func (r *otaRig) testRollout(t *testing.T) {
	ids := []string{"gw-up-1", "gw-up-2", "gw-up-3"}
	gws := r.startAll(t, ids...)
	r.uploadV2(t)
	id := r.createRollout(t, "--release", v2, "--devices", strings.Join(ids, ","), "--waves", "1,100%")
	ro := r.waitRollout(t, id, ota.RolloutCompleted, 90*time.Second)
	if ro.Succeeded != 3 || ro.Failures != 0 || len(ro.Waves) != 2 || ro.Waves[0].Devices != 1 || ro.Waves[1].Devices != 2 {
		t.Fatalf("rollout: %+v", ro)
	}
	for _, d := range ro.Devices {
		if d.State != protocol.OTASucceeded || d.Firmware != v2 || d.Reason != "" {
			t.Errorf("device status: %+v", d)
		}
	}
	for _, g := range gws {
		r.checkRuns(t, g, v2)
		if got := binVersion(t, g.bin+".prev"); got != v1 {
			t.Errorf("%s: previous binary kept is %s, want %s", g.id, got, v1)
		}
		if st := g.state(t); st.Phase != updater.Succeeded || st.Release != v2 || st.From != v1 {
			t.Errorf("%s: state file: %+v", g.id, st)
		}
	}
	status := r.h.ctl(t, "ota", "rollout", "status", id)
	if !strings.Contains(status, "completed") || strings.Count(status, "succeeded") < 3 {
		t.Errorf("ota rollout status:\n%s", status)
	}
}

// testUploadRefusals: the hub stores only releases whose bytes match a
// manifest signed by a key it trusts.
func (r *otaRig) testUploadRefusals(t *testing.T) {
	// Bytes changed after signing (same size).
	tampered := r.release(t, v2, "2.0.1", "a", r.host, "tampered after signing")
	flipLastByte(t, tampered)
	if out, err := r.h.tryCtl("ota", "verify", "--pub", r.pub("a"), tampered); err == nil || !strings.Contains(out, "SHA-256 mismatch") {
		t.Errorf("ota verify of a tampered artifact: %v\n%s", err, out)
	}
	// Signed by a key the hub does not trust.
	untrusted := r.release(t, v2, "2.0.2", "c", r.host, "signed by key c")
	// A signature that does not verify with the (trusted) key it names.
	badSig := r.release(t, v2, "2.0.3", "a", r.host, "bad signature")
	corruptSignature(t, badSig+".manifest.json")
	for _, c := range []struct{ artifact, want string }{
		{tampered, "SHA-256 mismatch"},
		{untrusted, "untrusted key"},
		{badSig, "bad manifest signature"},
	} {
		out, err := r.h.tryCtl("ota", "upload", c.artifact)
		if err == nil || !strings.Contains(out, "422") || !strings.Contains(out, c.want) {
			t.Errorf("ota upload %s: err %v, want 422 %q:\n%s", filepath.Base(c.artifact), err, c.want, out)
		}
	}
	var rel struct{ Releases []ota.Release }
	r.h.get(t, "/api/v1/ota/releases", &rel)
	for _, x := range rel.Releases {
		if x.Version == "2.0.1" || x.Version == "2.0.2" || x.Version == "2.0.3" {
			t.Errorf("refused release stored: %+v", x)
		}
	}
	if out, err := r.h.tryCtl("ota", "rollout", "create", "--release", "2.0.1", "--devices", "gw-up-1"); err == nil || !strings.Contains(out, "is not uploaded") {
		t.Errorf("rollout of a refused release: err %v\n%s", err, out)
	}
}

func flipLastByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, fi.Size()-1); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, fi.Size()-1); err != nil {
		t.Fatal(err)
	}
}

// corruptSignature changes the first character of the envelope's sig.
func corruptSignature(t *testing.T, manifestPath string) {
	t.Helper()
	b, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	sig, _ := env["sig"].(string)
	if sig == "" {
		t.Fatalf("no sig in %s", b)
	}
	c := byte('A')
	if sig[0] == 'A' {
		c = 'B'
	}
	env["sig"] = string(c) + sig[1:]
	if b, err = json.Marshal(env); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifestPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testGatewayRefusals: releases the hub accepts but the gateway must not
// install are reported failed with the reason, and the gateway runs on.
func (r *otaRig) testGatewayRefusals(t *testing.T) {
	g := r.startAll(t, "gw-refuse")[0]
	otherArch := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "linux/amd64"
	}
	corrupt := r.release(t, v2, "2.0.6", "a", r.host, "corrupted on the hub")
	cases := []struct {
		name, release, artifact, want string
		after                         func(sha string) // after the upload
	}{
		// The hub trusts key b; this gateway trusts only key a.
		{"untrusted key", "2.0.4", r.release(t, v2, "2.0.4", "b", r.host, "signed by key b"), "untrusted key", nil},
		{"wrong target", "2.0.5", r.release(t, v2, "2.0.5", "a", otherArch, "other arch"), "target", nil},
		// The stored artifact changes after the hub checked it (a bad disk,
		// an intruder): the gateway checks the bytes itself.
		{"tampered on the hub", "2.0.6", corrupt, "SHA-256 mismatch", func(sha string) {
			flipLastByte(t, filepath.Join(r.h.dir, "artifacts", sha))
		}},
	}
	for _, c := range cases {
		sha := r.upload(t, c.artifact)
		if c.after != nil {
			c.after(sha)
		}
		id := r.createRollout(t, "--release", c.release, "--devices", g.id)
		d := r.waitDevice(t, id, g.id, protocol.OTAFailed, 30*time.Second)
		if !strings.Contains(d.Reason, c.want) || d.Firmware != v1 {
			t.Errorf("%s: status %+v, want a reason with %q and fw %s", c.name, d, c.want, v1)
		}
		ro := r.waitRollout(t, id, ota.RolloutPaused, 10*time.Second) // max_failures 0
		if !strings.Contains(ro.Reason, "paused automatically") {
			t.Errorf("%s: rollout reason %q", c.name, ro.Reason)
		}
		if st := g.state(t); st.Phase != updater.Failed || st.Release != c.release {
			t.Errorf("%s: state file %+v", c.name, st)
		}
		for _, leftover := range []string{g.bin + ".new", filepath.Join(g.stateDir(), "download.part")} {
			if _, err := os.Stat(leftover); err == nil {
				t.Errorf("%s: %s left behind", c.name, leftover)
			}
		}
	}
	r.checkRuns(t, g, v1)
}

// testCrashRollback: a v2 that crashes at start is rolled back by the
// supervisor and reported; two failures in the first wave pass
// max_failures 1 and pause the rollout before the second wave; resume
// accepts them.
func (r *otaRig) testCrashRollback(t *testing.T) {
	ids := []string{"gw-crash-1", "gw-crash-2", "gw-crash-3"}
	gws := r.startAll(t, ids...)
	r.upload(t, r.release(t, vCrash, vCrash, "a", r.host, ""))
	id := r.createRollout(t, "--release", vCrash, "--devices", strings.Join(ids, ","), "--waves", "2,100%", "--max-failures", "1")
	ro := r.waitRollout(t, id, ota.RolloutPaused, 60*time.Second)
	if !strings.Contains(ro.Reason, "paused automatically") || ro.Failures != 2 || ro.CurrentWave != 1 {
		t.Fatalf("rollout: %+v", ro)
	}
	var waiting *otaGW
	for _, g := range gws {
		d := deviceIn(ro, g.id)
		switch d.Wave {
		case 1:
			if d.State != protocol.OTARolledBack || d.Firmware != v1 ||
				!strings.Contains(d.Reason, "exited (exit status 2) before it became healthy") {
				t.Errorf("wave 1 device: %+v", d)
			}
			if st := g.state(t); st.Phase != updater.RolledBack {
				t.Errorf("%s: state file %+v", g.id, st)
			}
			r.checkRuns(t, g, v1)
		case 2:
			waiting = g
		}
	}
	if waiting == nil {
		t.Fatalf("no device in wave 2: %+v", ro.Devices)
	}
	// The paused rollout never told the second wave.
	if d := deviceIn(r.rollout(t, id), waiting.id); d.State != ota.DevicePending {
		t.Errorf("wave 2 device while paused: %+v", d)
	}
	if st := waiting.state(t); st.Phase != updater.Idle {
		t.Errorf("%s acted while its wave had not started: %+v", waiting.id, st)
	}
	// Resuming accepts the two failures; the third one is within the limit.
	r.h.ctl(t, "ota", "rollout", "resume", id)
	r.waitDevice(t, id, waiting.id, protocol.OTARolledBack, 60*time.Second)
	ro = r.waitRollout(t, id, ota.RolloutCompleted, 30*time.Second)
	if ro.Failures != 3 || ro.Succeeded != 0 {
		t.Errorf("rollout after resume: %+v", ro)
	}
	r.checkRuns(t, waiting, v1)
}

// testUnhealthy: a new version that runs but never becomes healthy (its
// succeeded status never acknowledged) rolls itself back at the health
// timeout, and the previous version reports why.
func (r *otaRig) testUnhealthy(t *testing.T) {
	const health = 3 * time.Second
	g := r.startAllHealth(t, health, "gw-unhealthy")[0]
	r.upload(t, r.release(t, vSick, vSick, "a", r.host, ""))
	id := r.createRollout(t, "--release", vSick, "--devices", g.id)
	d := r.waitDevice(t, id, g.id, protocol.OTARolledBack, 60*time.Second)
	if want := fmt.Sprintf("version %s not healthy within %v", vSick, health); !strings.Contains(d.Reason, want) || d.Firmware != v1 {
		t.Errorf("status %+v, want fw %s and a reason with %q", d, v1, want)
	}
	if st := g.state(t); st.Phase != updater.RolledBack || st.Release != vSick {
		t.Errorf("state file %+v", st)
	}
	r.checkRuns(t, g, v1)
}

// testOffline: a gateway that is off when the rollout is created gets the
// retained notice when it comes back.
func (r *otaRig) testOffline(t *testing.T) {
	g := r.startAll(t, "gw-offline")[0]
	g.p.stop(t)
	waitFor(t, 30*time.Second, "gw-offline offline", func() bool {
		d, err := r.device(g.id)
		return err == nil && d.State == "offline"
	})
	r.uploadV2(t)
	id := r.createRollout(t, "--release", v2, "--devices", g.id)
	if d := deviceIn(r.rollout(t, id), g.id); d.State != protocol.OTANotified {
		t.Fatalf("offline device: %+v", d)
	}
	if st := g.state(t); st.Phase != updater.Idle {
		t.Fatalf("an offline gateway changed state: %+v", st)
	}
	g.run(t)
	d := r.waitDevice(t, id, g.id, protocol.OTASucceeded, 60*time.Second)
	if d.Firmware != v2 {
		t.Errorf("status %+v", d)
	}
	r.checkRuns(t, g, v2)
}

// testKillDuringDownload: the download is stalled after a checkpoint, the
// gateway killed; restarted, it resumes the download and updates.
func (r *otaRig) testKillDuringDownload(t *testing.T) {
	g := r.startAll(t, "gw-kill-dl")[0]
	r.uploadV2(t)
	r.px.hold(0)
	t.Cleanup(r.px.release)
	id := r.createRollout(t, "--release", v2, "--devices", g.id)
	// A checkpoint (partial file synced, its length in the state file, a
	// progress report) comes with the first bytes after the progress
	// interval: trickle bytes until the hub has a progress report.
	var d ota.DeviceStatus
	waitFor(t, 30*time.Second, "a download progress report", func() bool {
		r.px.hold(16 << 10)
		var ro ota.Rollout
		if r.h.tryGet("/api/v1/ota/rollouts/"+id, &ro) != nil {
			return false
		}
		d = deviceIn(ro, g.id)
		return d.State == protocol.OTADownloading && d.Bytes > 0
	})
	r.px.hold(0)
	killGroup(t, g.p)
	st := g.state(t)
	if st.Phase != updater.Downloading || st.Bytes <= 0 || st.Bytes >= st.Total {
		t.Fatalf("state file after the kill: %+v", st)
	}
	if got := binVersion(t, g.bin); got != v1 {
		t.Fatalf("binary in place after a kill during download: %s", got)
	}
	r.px.release()
	g.run(t)
	r.waitDevice(t, id, g.id, protocol.OTASucceeded, 60*time.Second)
	if out := g.p.out.String(); !strings.Contains(out, "resuming download") {
		t.Errorf("the download started over instead of resuming from %d bytes:\n%s", st.Bytes, tail(out, 40))
	}
	r.checkRuns(t, g, v2)
}

// testKillDuringInstall: the gateway is killed the moment its state file
// says verifying (staging the new binary), and again when it says
// installing (swapping it in); after each kill a complete binary is in
// place, and the update ends succeeded.
func (r *otaRig) testKillDuringInstall(t *testing.T) {
	g := r.startAll(t, "gw-kill-inst")[0]
	r.uploadV2(t)
	w := watchState(t, g.stateDir())
	// Hold the download back until the watch is ready.
	r.px.hold(0)
	t.Cleanup(r.px.release)
	id := r.createRollout(t, "--release", v2, "--devices", g.id)
	w.waitPhase(t, updater.Downloading, 30*time.Second)
	r.px.release()
	for _, phase := range []updater.Phase{updater.Verifying, updater.Installing} {
		w.waitPhase(t, phase, 30*time.Second)
		killGroup(t, g.p)
		st := g.state(t)
		if st.Phase != phase {
			t.Fatalf("the kill came too late: the state file says %s, not %s", st.Phase, phase)
		}
		if got := binVersion(t, g.bin); got != v1 && got != v2 {
			t.Fatalf("after a kill during %s the binary in place is %q", phase, got)
		}
		g.run(t)
	}
	d := r.waitDevice(t, id, g.id, protocol.OTASucceeded, 60*time.Second)
	if d.Firmware != v2 {
		t.Errorf("status %+v", d)
	}
	r.checkRuns(t, g, v2)
}

// stateWatch reports every new state file in an updater's state directory
// at once (inotify), so that the test can kill the gateway within the
// phase it just entered.
type stateWatch struct {
	f   *os.File
	dir string
}

func watchState(t *testing.T, dir string) *stateWatch {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	w := &stateWatch{f: os.NewFile(uintptr(fd), "inotify"), dir: dir}
	t.Cleanup(func() { w.f.Close() })
	return w
}

// waitPhase returns as soon as the state file says phase.
func (w *stateWatch) waitPhase(t *testing.T, phase updater.Phase, within time.Duration) {
	t.Helper()
	if err := w.f.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	var seen []updater.Phase
	for {
		if st, err := updater.ReadState(w.dir); err == nil {
			if len(seen) == 0 || seen[len(seen)-1] != st.Phase {
				seen = append(seen, st.Phase)
			}
			if st.Phase == phase {
				return
			}
		}
		// Any file written or renamed in: read the state again.
		if _, err := w.f.Read(buf); err != nil {
			t.Fatalf("waiting for phase %s (seen %v): %v", phase, seen, err)
		}
	}
}
