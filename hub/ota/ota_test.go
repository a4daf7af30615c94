package ota_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

func pct(p float64) *ota.Limit { return &ota.Limit{Pct: p, IsPct: true} }

func TestUploadVerifiesBeforeStoring(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	r := startRig(t, dir, k)

	// A fleet subscriber sees the retained release announcement.
	annc := make(chan protocol.OTARelease, 4)
	wtok, _, err := r.Issue(context.Background(), token.Request{Device: "watcher", Sub: []string{protocol.TopicFleetOTA}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	path, data := k.artifact(t, "1.4.0", 64<<10)
	mf, _ := os.ReadFile(path + manifest.ManifestSuffix)
	other := newKeys(t) // a key the hub does not trust
	opath, odata := other.artifact(t, "1.4.0", 1000)
	omf, _ := os.ReadFile(opath + manifest.ManifestSuffix)
	// Forged: signed by the other key, but naming the trusted key's id.
	var env map[string]any
	_ = json.Unmarshal(omf, &env)
	env["kid"] = k.ring.KeyIDs()[0]
	forged, _ := json.Marshal(env)
	tampered := bytes.Clone(data)
	tampered[len(tampered)/2] ^= 0x01

	cases := []struct {
		name   string
		parts  [][2]string
		status int
		detail string
	}{
		{"tampered artifact", [][2]string{{"manifest", string(mf)}, {"artifact", string(tampered)}}, 422, "SHA-256 mismatch"},
		{"truncated artifact", [][2]string{{"manifest", string(mf)}, {"artifact", string(data[:len(data)-1])}}, 422, "size mismatch"},
		{"longer artifact", [][2]string{{"manifest", string(mf)}, {"artifact", string(data) + "x"}}, 422, "longer than"},
		{"unknown key", [][2]string{{"manifest", string(omf)}, {"artifact", string(odata)}}, 422, "untrusted key"},
		{"wrong key", [][2]string{{"manifest", string(forged)}, {"artifact", string(odata)}}, 422, "bad manifest signature"},
		{"malformed manifest", [][2]string{{"manifest", "{"}, {"artifact", string(data)}}, 400, "malformed manifest"},
		{"manifest with unknown member", [][2]string{{"manifest", strings.Replace(string(mf), `"v": 1`, `"v": 1, "x": 2`, 1)}, {"artifact", string(data)}}, 400, "malformed"},
		{"artifact before manifest", [][2]string{{"artifact", string(data)}, {"manifest", string(mf)}}, 400, `send "manifest" first`},
		{"no artifact", [][2]string{{"manifest", string(mf)}}, 400, `"artifact" part`},
		{"extra part", [][2]string{{"manifest", string(mf)}, {"artifact", string(data)}, {"x", "y"}}, 400, `unexpected part "x"`},
	}
	for _, tc := range cases {
		st, b := r.upload(tc.parts)
		var e apiErr
		_ = json.Unmarshal(b, &e)
		if st != tc.status || !strings.Contains(e.Detail, tc.detail) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, st, b, tc.status, tc.detail)
		}
		if fs := artifactFiles(t, dir); len(fs) != 0 {
			t.Fatalf("%s: refused upload left files: %v", tc.name, fs)
		}
	}
	var list struct{ Releases []ota.Release }
	if r.api("GET", "/api/v1/ota/releases", nil, &list); len(list.Releases) != 0 {
		t.Fatalf("refused uploads stored releases: %+v", list.Releases)
	}
	// Not multipart at all.
	var e apiErr
	if st := r.api("POST", "/api/v1/ota/releases", map[string]string{"x": "y"}, &e); st != 400 || !strings.Contains(e.Detail, "multipart/form-data") {
		t.Fatalf("JSON upload: %d %+v", st, e)
	}

	// The good one: content-addressed, manifest beside it, announced.
	rel := r.uploadFile(path)
	sum := sha256.Sum256(data)
	if rel.SHA256 != hex.EncodeToString(sum[:]) || rel.Version != "1.4.0" || rel.Target != "linux/arm64" || rel.Size != int64(len(data)) {
		t.Fatalf("release = %+v", rel)
	}
	if fs := artifactFiles(t, dir); !slices.Equal(fs, []string{rel.SHA256, rel.SHA256 + manifest.ManifestSuffix}) {
		t.Fatalf("artifact dir = %v", fs)
	}
	stored, _ := os.ReadFile(filepath.Join(dir, "artifacts", rel.SHA256))
	if !bytes.Equal(stored, data) {
		t.Fatal("stored artifact differs")
	}
	w, err := mqtttest.Dial(context.Background(), r.addrs.MQTT, "watcher", wtok, mqtttest.Options{TLS: r.tls, OnPublish: func(p *paho.Publish) {
		var a protocol.OTARelease
		if json.Unmarshal(p.Payload, &a) == nil {
			annc <- a
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Disconnect(&paho.Disconnect{}) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.TopicFleetOTA, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-annc:
		if a.Release != "1.4.0" || a.SHA256 != rel.SHA256 || a.Target != "linux/arm64" {
			t.Fatalf("announcement %+v", a)
		}
	case <-ctx.Done():
		t.Fatal("no retained release announcement")
	}

	// The same upload again is idempotent.
	st, b := r.upload([][2]string{{"manifest", string(mf)}, {"artifact", string(data)}})
	var up ota.UploadResponse
	if _ = json.Unmarshal(b, &up); st != 200 || up.Created || up.Release.SHA256 != rel.SHA256 {
		t.Fatalf("duplicate upload: %d %s", st, b)
	}
	// Another build under the same version and target is a conflict.
	p2, _ := k.artifact(t, "1.4.0", 2000)
	mf2, _ := os.ReadFile(p2 + manifest.ManifestSuffix)
	d2, _ := os.ReadFile(p2)
	if st, b := r.upload([][2]string{{"manifest", string(mf2)}, {"artifact", string(d2)}}); st != 409 || !strings.Contains(string(b), "already exists with another artifact") {
		t.Fatalf("conflicting upload: %d %s", st, b)
	}
	if r.api("GET", "/api/v1/ota/releases", nil, &list); len(list.Releases) != 1 {
		t.Fatalf("releases = %+v", list.Releases)
	}
	if fs := artifactFiles(t, dir); len(fs) != 2 {
		t.Fatalf("artifact dir = %v", fs)
	}
	if m := metricsText(r); !contains(m, `outpost_ota_uploads_total{result="created"} 1`, `outpost_ota_uploads_total{result="duplicate"} 1`, `outpost_ota_uploads_total{result="rejected"} 12`) {
		t.Errorf("upload metrics:\n%s", m)
	}
	// Admin token required.
	req, _ := http.NewRequest("GET", r.addrs.HTTPURL+"/api/v1/ota/releases", nil)
	if resp, err := r.http.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func TestUploadWithoutReleaseKeysIsRefused(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	r := startRig(t, dir, nil)
	path, data := k.artifact(t, "1.0.0", 100)
	mf, _ := os.ReadFile(path + manifest.ManifestSuffix)
	st, b := r.upload([][2]string{{"manifest", string(mf)}, {"artifact", string(data)}})
	if st != 422 || !strings.Contains(string(b), "ota.release_keys") {
		t.Fatalf("upload without trusted keys: %d %s", st, b)
	}
	if fs := artifactFiles(t, dir); len(fs) != 0 {
		t.Fatalf("files: %v", fs)
	}
}

func TestRolloutWavesAdvanceToCompletion(t *testing.T) {
	k := newKeys(t)
	r := startRig(t, t.TempDir(), k)
	rel := r.uploadFile(must(k.artifact(t, "2.0.0", 4096)))
	devIDs := ids("gw", 10)
	devs := map[string]*device{}
	for _, id := range devIDs {
		devs[id] = r.dial(id, r.token(id), nil)
	}
	ro := r.createRollout(ota.RolloutRequest{Release: "2.0.0", Devices: devIDs, Waves: []string{"10%", "50%", "100%"}, MaxFailures: pct(10)})
	if ro.State != ota.RolloutActive || ro.CurrentWave != 1 || ro.Total != 10 {
		t.Fatalf("created %+v", ro)
	}
	if got := []int{ro.Waves[0].Devices, ro.Waves[1].Devices, ro.Waves[2].Devices}; !slices.Equal(got, []int{1, 4, 5}) {
		t.Fatalf("wave sizes %v, want [1 4 5] (10%%, 50%%, 100%% of 10, cumulative)", got)
	}
	waveOf := map[string]int{}
	for _, d := range ro.Devices {
		waveOf[d.Device] = d.Wave
	}
	for wave := 1; wave <= 3; wave++ {
		var members []*device
		for _, id := range devIDs {
			if waveOf[id] == wave {
				members = append(members, devs[id])
			}
		}
		for _, d := range members {
			waitFor(t, 5*time.Second, d.id+" notice", func() bool { n, _ := d.got(); return len(n) == 1 })
			n, _ := d.got()
			checkNotice(t, k, rel, ro.ID, n[0])
		}
		for i, d := range members {
			n, _ := d.got()
			succeed(d, n[0])
			// Its finished notice is withdrawn.
			waitFor(t, 5*time.Second, d.id+" withdrawal", func() bool { _, w := d.got(); return w == 1 })
			if i == len(members)-1 {
				break
			}
			// Not every device of this wave is done: the next wave has not started.
			cur := r.rollout(ro.ID)
			if cur.CurrentWave != wave {
				t.Fatalf("wave %d: %d/%d done, but current wave is %d", wave, i+1, len(members), cur.CurrentWave)
			}
			for _, id := range devIDs {
				if n, _ := devs[id].got(); waveOf[id] > wave && len(n) > 0 {
					t.Fatalf("wave %d device %s notified while wave %d is unfinished", waveOf[id], id, wave)
				}
			}
		}
	}
	waitFor(t, 5*time.Second, "rollout completed", func() bool { return r.rollout(ro.ID).State == ota.RolloutCompleted })
	fin := r.rollout(ro.ID)
	if fin.Progress != 100 || fin.Succeeded != 10 || fin.Failures != 0 || fin.Counts["succeeded"] != 10 || fin.FinishedMS == 0 {
		t.Fatalf("completed rollout %+v", fin)
	}
	for _, d := range fin.Devices {
		if d.Firmware != "2.0.0" || d.NotifiedMS == 0 {
			t.Fatalf("device %+v", d)
		}
	}
	var list struct{ Rollouts []ota.Rollout }
	if r.api("GET", "/api/v1/ota/rollouts?state=completed", nil, &list); len(list.Rollouts) != 1 || list.Rollouts[0].Succeeded != 10 || len(list.Rollouts[0].Devices) != 0 {
		t.Fatalf("list = %+v", list.Rollouts)
	}
}

func must(path string, _ []byte) string { return path }

func checkNotice(t *testing.T, k *keys, rel ota.Release, rollout string, n protocol.OTANotice) {
	t.Helper()
	if n.Rollout != rollout || n.Release != rel.Version || !strings.HasSuffix(n.URL, "/api/v1/ota/artifacts/"+rel.SHA256) {
		t.Fatalf("notice %+v", n)
	}
	m, err := manifest.VerifyManifest(k.ring, n.Manifest) // what the gateway does
	if err != nil || m.SHA256 != rel.SHA256 {
		t.Fatalf("notice manifest: %+v %v", m, err)
	}
}

func TestFailuresOverLimitPauseRollout(t *testing.T) {
	k := newKeys(t)
	r := startRig(t, t.TempDir(), k)
	r.uploadFile(must(k.artifact(t, "3.1.0", 1000)))
	devIDs := ids("gw", 10)
	devs := map[string]*device{}
	for _, id := range devIDs {
		devs[id] = r.dial(id, r.token(id), nil)
	}
	// Wave 1 is 5 devices; 20% of 5 allows one failure.
	ro := r.createRollout(ota.RolloutRequest{Release: "3.1.0", Devices: devIDs, Waves: []string{"50%", "100%"}, MaxFailures: pct(20)})
	var w1, w2 []*device
	for _, d := range ro.Devices {
		if d.Wave == 1 {
			w1 = append(w1, devs[d.Device])
		} else {
			w2 = append(w2, devs[d.Device])
		}
	}
	notice := func(d *device) protocol.OTANotice {
		waitFor(t, 5*time.Second, d.id+" notice", func() bool { n, _ := d.got(); return len(n) > 0 })
		n, _ := d.got()
		return n[len(n)-1]
	}
	inFlight := w1[2]
	inFlight.report(notice(inFlight), protocol.OTADownloading, "")
	fail("digest mismatch")(w1[0], notice(w1[0]))
	waitFor(t, 5*time.Second, "first failure recorded", func() bool { return r.rollout(ro.ID).Failures == 1 })
	if st := r.rollout(ro.ID).State; st != ota.RolloutActive {
		t.Fatalf("one failure of five (20%%) paused it: %s", st)
	}
	w1[1].report(notice(w1[1]), protocol.OTARolledBack, "health check failed: no heartbeat ack in 2m")
	waitFor(t, 5*time.Second, "paused", func() bool { return r.rollout(ro.ID).State == ota.RolloutPaused })
	p := r.rollout(ro.ID)
	if !strings.Contains(p.Reason, "max_failures 20%") || p.Failures != 2 || p.CurrentWave != 1 || p.Counts["rolled_back"] != 1 {
		t.Fatalf("paused rollout %+v", p)
	}
	// The pause withdrew the notices of devices that had not begun; the one
	// downloading keeps its notice.
	for _, d := range []*device{w1[3], w1[4]} {
		waitFor(t, 5*time.Second, d.id+" withdrawal", func() bool { _, w := d.got(); return w == 1 })
	}
	if _, w := inFlight.got(); w != 0 {
		t.Fatalf("in-flight device lost its notice on pause")
	}
	for _, d := range w2 {
		if n, _ := d.got(); len(n) != 0 {
			t.Fatalf("wave 2 device %s notified by a paused rollout", d.id)
		}
	}
	// The in-flight device finishes; a paused rollout does not advance.
	inFlight.report(notice(inFlight), protocol.OTASucceeded, "")
	waitFor(t, 5*time.Second, "in-flight success", func() bool { return r.rollout(ro.ID).Succeeded == 1 })

	// Resume: the two failures are accepted, the withdrawn notices return.
	var res ota.Rollout
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/resume", nil, &res); st != 200 || res.State != ota.RolloutActive || res.AcceptedFailures != 2 {
		t.Fatalf("resume: %d %+v", st, res)
	}
	for _, d := range []*device{w1[3], w1[4]} {
		waitFor(t, 5*time.Second, d.id+" second notice", func() bool { n, _ := d.got(); return len(n) == 2 })
		succeed(d, notice(d))
	}
	for _, d := range w2 {
		succeed(d, notice(d))
	}
	waitFor(t, 5*time.Second, "completed", func() bool { return r.rollout(ro.ID).State == ota.RolloutCompleted })
	if fin := r.rollout(ro.ID); fin.Succeeded != 8 || fin.Failures != 2 || fin.Progress != 100 {
		t.Fatalf("final %+v", fin)
	}
	// Pausing a completed rollout is a conflict.
	var e apiErr
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/pause", nil, &e); st != 409 || !strings.Contains(e.Detail, "completed") {
		t.Fatalf("pause completed: %d %+v", st, e)
	}
}

func TestOperatorPauseAndCountLimit(t *testing.T) {
	k := newKeys(t)
	r := startRig(t, t.TempDir(), k)
	r.uploadFile(must(k.artifact(t, "3.2.0", 1000)))
	a, b := r.dial("gw-a", r.token("gw-a"), nil), r.dial("gw-b", r.token("gw-b"), nil)
	ro := r.createRollout(ota.RolloutRequest{Release: "3.2.0", Devices: []string{"gw-a", "gw-b"}, MaxFailures: &ota.Limit{Count: 1}})
	var p ota.Rollout
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/pause", nil, &p); st != 200 || p.State != ota.RolloutPaused || p.Reason != "paused by an operator" {
		t.Fatalf("pause: %d %+v", st, p)
	}
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/pause", nil, &p); st != 200 || p.State != ota.RolloutPaused {
		t.Fatalf("pause again: %d %+v", st, p)
	}
	for _, d := range []*device{a, b} {
		waitFor(t, 5*time.Second, d.id+" withdrawal", func() bool { _, w := d.got(); return w == 1 })
	}
	r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/resume", nil, &p)
	waitFor(t, 5*time.Second, "notices back", func() bool {
		na, _ := a.got()
		nb, _ := b.got()
		return len(na) == 2 && len(nb) == 2
	})
	na, _ := a.got()
	fail("disk full")(a, na[1]) // 1 failure: within a count limit of 1
	waitFor(t, 5*time.Second, "failure", func() bool { return r.rollout(ro.ID).Failures == 1 })
	nb, _ := b.got()
	succeed(b, nb[1])
	waitFor(t, 5*time.Second, "completed", func() bool { return r.rollout(ro.ID).State == ota.RolloutCompleted })
	var e apiErr
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/explode", nil, &e); st != 404 {
		t.Fatalf("unknown action: %d %+v", st, e)
	}
	if st := r.api("GET", "/api/v1/ota/rollouts/r-nope", nil, &e); st != 404 {
		t.Fatalf("unknown rollout: %d %+v", st, e)
	}
}

func TestOfflineDeviceAndHubRestart(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	r := startRig(t, dir, k)
	path, data := k.artifact(t, "4.0.0", 300<<10)
	rel := r.uploadFile(path)
	tokA, tokB, tokC := r.token("gw-a"), r.token("gw-b"), r.token("gw-c")
	a := r.dial("gw-a", tokA, nil)
	// gw-b and gw-c are offline when the rollout starts.
	ro := r.createRollout(ota.RolloutRequest{Release: "4.0.0", Devices: []string{"gw-a", "gw-b", "gw-c"}})
	waitFor(t, 5*time.Second, "gw-a notice", func() bool { n, _ := a.got(); return len(n) == 1 })

	// gw-c comes online: the retained notice is waiting for it.
	c := r.dial("gw-c", tokC, nil)
	waitFor(t, 5*time.Second, "gw-c notice on connect", func() bool { n, _ := c.got(); return len(n) == 1 })
	nc, _ := c.got()
	checkNotice(t, k, rel, ro.ID, nc[0])
	c.report(nc[0], protocol.OTADownloading, "")
	a.close()
	c.close()

	// Restart: the broker's retained messages are gone; the hub re-publishes.
	r.stop()
	r2 := startRig(t, dir, k)
	if ro2 := r2.rollout(ro.ID); ro2.State != ota.RolloutActive || ro2.Counts["notified"] != 2 || ro2.Counts["downloading"] != 1 {
		t.Fatalf("rollout after restart %+v", ro2)
	}
	// gw-b, offline all along, downloads for real (with its token, resuming
	// halfway), verifies like the gateway does, and reports.
	real := func(d *device, n protocol.OTANotice) {
		m, err := manifest.VerifyManifest(k.ring, n.Manifest)
		if err != nil {
			t.Errorf("%s: %v", d.id, err)
			return
		}
		d.report(n, protocol.OTADownloading, "")
		half := m.Size / 2
		resp, first := r2.download(n.URL, d.tok, fmt.Sprintf("bytes=0-%d", half-1))
		resp2, rest := r2.download(n.URL, d.tok, fmt.Sprintf("bytes=%d-", half))
		if resp.StatusCode != 206 || resp2.StatusCode != 206 {
			t.Errorf("%s: ranges answered %d, %d", d.id, resp.StatusCode, resp2.StatusCode)
			return
		}
		d.report(n, protocol.OTAVerifying, "")
		if err := manifest.CheckArtifact(m, bytes.NewReader(append(first, rest...))); err != nil {
			d.report(n, protocol.OTAFailed, err.Error())
			return
		}
		succeed(d, n)
	}
	b := r2.dial("gw-b", tokB, real)
	a2 := r2.dial("gw-a", tokA, succeed)
	c2 := r2.dial("gw-c", tokC, succeed)
	waitFor(t, 10*time.Second, "completed after restart", func() bool { return r2.rollout(ro.ID).State == ota.RolloutCompleted })
	for _, d := range []*device{a2, b, c2} {
		n, _ := d.got()
		if len(n) != 1 || !strings.HasPrefix(n[0].URL, r2.addrs.HTTPURL+"/") {
			t.Fatalf("%s notices after restart: %+v (hub at %s)", d.id, n, r2.addrs.HTTPURL)
		}
	}
	if fin := r2.rollout(ro.ID); fin.Succeeded != 3 {
		t.Fatalf("final %+v", fin)
	}
	if !contains(metricsText(r2), fmt.Sprintf("outpost_ota_artifact_bytes_total %d", len(data))) {
		t.Errorf("bytes served metric lacks %d", len(data))
	}
}

func TestAbortWithdrawsNotices(t *testing.T) {
	k := newKeys(t)
	r := startRig(t, t.TempDir(), k)
	rel := r.uploadFile(must(k.artifact(t, "5.0.0", 1000)))
	a, b := r.dial("gw-a", r.token("gw-a"), nil), r.dial("gw-b", r.token("gw-b"), nil)
	tokC := r.token("gw-c")
	ro := r.createRollout(ota.RolloutRequest{Release: "5.0.0", Devices: []string{"gw-a", "gw-b", "gw-c"}})
	waitFor(t, 5*time.Second, "notices", func() bool {
		na, _ := a.got()
		nb, _ := b.got()
		return len(na) == 1 && len(nb) == 1
	})
	na, _ := a.got()
	a.report(na[0], protocol.OTADownloading, "")
	var ab ota.Rollout
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/abort", nil, &ab); st != 200 || ab.State != ota.RolloutAborted || ab.FinishedMS == 0 {
		t.Fatalf("abort: %d %+v", st, ab)
	}
	for _, d := range []*device{a, b} {
		waitFor(t, 5*time.Second, d.id+" withdrawal", func() bool { _, w := d.got(); return w == 1 })
	}
	// gw-c connects after the abort: nothing is retained for it.
	c := r.dial("gw-c", tokC, nil)
	time.Sleep(300 * time.Millisecond) // retained messages follow the SUBACK at once
	if n, w := c.got(); len(n) != 0 || w != 0 {
		t.Fatalf("gw-c after abort: notices %v, withdrawals %d", n, w)
	}
	// The artifact is no longer served to the rollout's devices.
	if resp, _ := r.download(na[0].URL, a.tok, ""); resp.StatusCode != 403 {
		t.Fatalf("download after abort: %d", resp.StatusCode)
	}
	// A late report is still recorded (the truth about the device).
	if rc := a.report(na[0], protocol.OTAFailed, "aborted by the hub"); rc != 0 {
		t.Fatalf("late status PUBACK 0x%02x", rc)
	}
	waitFor(t, 5*time.Second, "late status", func() bool { return r.rollout(ro.ID).Counts["failed"] == 1 })
	var e apiErr
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/abort", nil, &ab); st != 200 {
		t.Fatalf("abort again: %d", st)
	}
	if st := r.api("POST", "/api/v1/ota/rollouts/"+ro.ID+"/resume", nil, &e); st != 409 {
		t.Fatalf("resume aborted: %d %+v", st, e)
	}
	// The devices are free for a new rollout.
	ro2 := r.createRollout(ota.RolloutRequest{Release: rel.Version, Devices: []string{"gw-a", "gw-b", "gw-c"}})
	waitFor(t, 5*time.Second, "new notices", func() bool { n, _ := c.got(); return len(n) == 1 && n[0].Rollout == ro2.ID })
}

func TestArtifactDownloadAuthRangeAndCap(t *testing.T) {
	k := newKeys(t)
	dir := t.TempDir()
	r := startRig(t, dir, k, func(c *hub.Config) { c.OTA.MaxDownloads = 1 })
	path, data := k.artifact(t, "6.0.0", 32<<20)
	rel := r.uploadFile(path)
	tokA := r.token("gw-a")
	tokB := r.token("gw-b")
	a := r.dial("gw-a", tokA, nil)
	r.createRollout(ota.RolloutRequest{Release: "6.0.0", Devices: []string{"gw-a"}})
	waitFor(t, 5*time.Second, "notice", func() bool { n, _ := a.got(); return len(n) == 1 })
	na, _ := a.got()
	url := na[0].URL

	resp, b := r.download(url, tokA, "bytes=1000-1999")
	if resp.StatusCode != 206 || !bytes.Equal(b, data[1000:2000]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 1000-1999/%d", len(data)) {
		t.Fatalf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(b))
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+rel.SHA256+`"` {
		t.Fatalf("ETag %q", etag)
	}
	// Resume with If-Range: the same artifact continues, a changed one restarts.
	tail := len(data) - 100
	if resp, b := r.download(url, tokA, fmt.Sprintf("bytes=%d-", tail), "If-Range", etag); resp.StatusCode != 206 || !bytes.Equal(b, data[tail:]) {
		t.Fatalf("If-Range resume: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, b := r.download(url, tokA, "bytes=0-9", "If-Range", `"other"`); resp.StatusCode != 200 || len(b) != len(data) {
		t.Fatalf("If-Range mismatch: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, _ := r.download(url, tokA, fmt.Sprintf("bytes=%d-", len(data)+5)); resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable range: %d", resp.StatusCode)
	}

	// Refusals.
	otherSHA := strings.Repeat("ab", 32)
	noOTA, _, _ := r.Issue(context.Background(), token.Request{Device: "gw-a", Pub: []string{protocol.DeviceTopic("gw-a", protocol.SufLog)}, TTL: time.Hour})
	revoked, rc, _ := r.Issue(context.Background(), token.Request{Device: "gw-a", Sub: []string{protocol.DeviceTopic("gw-a", "in/#")}, TTL: time.Hour})
	if _, _, err := r.Revoke(context.Background(), rc.ID); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, url, tok string
		status         int
		detail         string
	}{
		{"device not in the rollout", url, tokB, 403, "gw-b is not in an unfinished rollout"},
		{"admin token", url, r.AdminToken(), 401, "not a device channel token"},
		{"garbage token", url, "garbage", 401, "not a device channel token"},
		{"no token", url, "", 401, "channel token as bearer"},
		{"revoked token", url, revoked, 401, "revoked"},
		{"token without its OTA topic", url, noOTA, 403, "does not grant its OTA notices"},
		{"another artifact", strings.Replace(url, rel.SHA256, otherSHA, 1), tokA, 403, "not in an unfinished rollout"},
		{"not a digest", strings.Replace(url, rel.SHA256, "..%2F..%2Fhub.db", 1), tokA, 400, "not a SHA-256"},
	}
	for _, tc := range cases {
		resp, b := r.download(tc.url, tc.tok, "")
		var e apiErr
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode != tc.status || !strings.Contains(e.Detail, tc.detail) {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, resp.StatusCode, b, tc.status, tc.detail)
		}
	}

	// The cap: one download in progress (its body unread, so the handler is
	// blocked writing) makes the next one 503 with Retry-After.
	slow := &http.Client{Transport: &http.Transport{TLSClientConfig: r.tls}}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tokA)
	held, err := slow.Do(req)
	if err != nil || held.StatusCode != 200 {
		t.Fatalf("held download: %v %v", held, err)
	}
	resp, b = r.download(url, tokA, "bytes=0-0")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "ota.max_downloads") {
		t.Fatalf("over the cap: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	held.Body.Close()
	slow.CloseIdleConnections()
	waitFor(t, 10*time.Second, "slot freed", func() bool {
		resp, _ := r.download(url, tokA, "bytes=0-0")
		return resp.StatusCode == 206
	})
	if m := metricsText(r); !contains(m, `outpost_ota_downloads_total{result="busy"} `, `outpost_ota_downloads_total{result="forbidden"} 3`, "outpost_ota_artifact_bytes_total ") {
		t.Errorf("download metrics:\n%s", m)
	}

	// Once the device finished, the artifact is no longer its to fetch.
	succeed(a, na[0])
	waitFor(t, 5*time.Second, "withdrawal", func() bool { _, w := a.got(); return w == 1 })
	if resp, _ := r.download(url, tokA, "bytes=0-0"); resp.StatusCode != 403 {
		t.Fatalf("download after success: %d", resp.StatusCode)
	}
}

func TestStatusHandling(t *testing.T) {
	k := newKeys(t)
	r := startRig(t, t.TempDir(), k)
	r.uploadFile(must(k.artifact(t, "7.0.0", 1000)))
	a := r.dial("gw-a", r.token("gw-a"), nil)
	b := r.dial("gw-b", r.token("gw-b"), nil)
	ro := r.createRollout(ota.RolloutRequest{Release: "7.0.0", Devices: []string{"gw-a"}})
	waitFor(t, 5*time.Second, "notice", func() bool { n, _ := a.got(); return len(n) == 1 })
	na, _ := a.got()
	n := na[0]
	cases := []struct {
		name    string
		d       *device
		payload string
		rc      byte
	}{
		{"malformed", a, `{"v":1,"state":"exploded","rollout":"x"}`, 0x99},
		{"not JSON", a, `nope`, 0x99},
		{"unknown rollout", a, `{"v":1,"rollout":"r-000000000000","release":"7.0.0","state":"succeeded","t":1}`, 0},
		{"other device's rollout", b, fmt.Sprintf(`{"v":1,"rollout":%q,"release":"7.0.0","state":"succeeded","t":1}`, ro.ID), 0},
		{"wrong release", a, fmt.Sprintf(`{"v":1,"rollout":%q,"release":"6.9.9","state":"succeeded","t":1}`, ro.ID), 0},
		{"progress", a, fmt.Sprintf(`{"v":1,"rollout":%q,"release":"7.0.0","state":"downloading","bytes":500,"total":1000,"t":1}`, ro.ID), 0},
		{"verifying keeps bytes", a, fmt.Sprintf(`{"v":1,"rollout":%q,"release":"7.0.0","state":"verifying","t":1}`, ro.ID), 0},
	}
	for _, tc := range cases {
		if rc := tc.d.publishStatus([]byte(tc.payload)); rc != tc.rc {
			t.Errorf("%s: PUBACK 0x%02x, want 0x%02x", tc.name, rc, tc.rc)
		}
	}
	got := r.rollout(ro.ID)
	if d := got.Devices[0]; d.State != "verifying" || d.Bytes != 500 || d.Total != 1000 {
		t.Fatalf("device after statuses %+v", d)
	}
	if m := metricsText(r); !contains(m, "outpost_ota_statuses_ignored_total 3", `outpost_mqtt_invalid_payloads_total{kind="ota/status"} 2`) {
		t.Errorf("status metrics:\n%s", m)
	}
	a.report(n, protocol.OTASucceeded, "")
	waitFor(t, 5*time.Second, "completed", func() bool { return r.rollout(ro.ID).State == ota.RolloutCompleted })
	// After it finished, a stray status changes nothing.
	a.report(n, protocol.OTAFailed, "late")
	if d := r.rollout(ro.ID).Devices[0]; d.State != "succeeded" {
		t.Fatalf("late status overwrote a finished device: %+v", d)
	}
}

func TestCreateRolloutErrors(t *testing.T) {
	k := newKeys(t)
	r := startRig(t, t.TempDir(), k)
	r.uploadFile(must(k.artifact(t, "1.0.0", 1000)))
	// The same version for another target.
	p := filepath.Join(t.TempDir(), "gw-armv6")
	if err := os.WriteFile(p, []byte("armv6 build"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Sign(k.priv, p, "1.0.0", manifest.Target{OS: "linux", Arch: "arm", Variant: "armv6"}, ""); err != nil {
		t.Fatal(err)
	}
	r.uploadFile(p)
	r.uploadFile(must(k.artifact(t, "1.1.0", 1000)))
	for _, id := range []string{"gw-1", "gw-2", "gw-3", "gw-new"} {
		r.token(id)
	}
	for _, id := range []string{"gw-2", "gw-3"} {
		if st := r.api("PUT", "/api/v1/devices/"+id+"/labels", map[string]string{"site": "north"}, nil); st != 200 {
			t.Fatalf("labels: %d", st)
		}
	}
	if err := r.Store().SaveHeartbeat(context.Background(), "gw-new", time.Now().UnixMilli(), protocol.Heartbeat{V: 1, Firmware: "2.0.0"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "firmware stored", func() bool {
		d, err := r.Store().Device(context.Background(), "gw-new")
		return err == nil && d.Firmware == "2.0.0"
	})
	arm64T := "linux/arm64"
	cases := []struct {
		name   string
		body   any
		status int
		detail string
	}{
		{"release not uploaded", ota.RolloutRequest{Release: "9.9.9", Devices: []string{"gw-1"}}, 422, "not uploaded"},
		{"ambiguous target", ota.RolloutRequest{Release: "1.0.0", Devices: []string{"gw-1"}}, 422, "give target"},
		{"bad version", ota.RolloutRequest{Release: "v1", Devices: []string{"gw-1"}}, 400, "leading"},
		{"no devices", ota.RolloutRequest{Release: "1.1.0"}, 400, "devices or selector"},
		{"both", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-1"}, Selector: "site=north"}, 400, "exactly one"},
		{"bad device id", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"bad id"}}, 400, "not allowed"},
		{"unknown device", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-1", "gw-ghost"}}, 422, "gw-ghost"},
		{"last wave not 100%", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-1"}, Waves: []string{"50%"}}, 400, "must be 100%"},
		{"waves decrease", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-1"}, Waves: []string{"50%", "20%", "100%"}}, 400, "must increase"},
		{"bad limit", map[string]any{"release": "1.1.0", "devices": []string{"gw-1"}, "max_failures": "lots"}, 400, "max_failures"},
		{"unknown field", map[string]any{"release": "1.1.0", "devices": []string{"gw-1"}, "wave": 1}, 400, "unknown field"},
		{"selector matches nothing", ota.RolloutRequest{Release: "1.1.0", Selector: "site=south"}, 422, "matches no device"},
		{"bad selector", ota.RolloutRequest{Release: "1.1.0", Selector: "north"}, 400, "label=value"},
		{"downgrade", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-new"}}, 409, "gw-new runs 2.0.0"},
	}
	for _, tc := range cases {
		var e apiErr
		if st := r.api("POST", "/api/v1/ota/rollouts", tc.body, &e); st != tc.status || !strings.Contains(e.Detail, tc.detail) {
			t.Errorf("%s: %d %+v; want %d with %q", tc.name, st, e, tc.status, tc.detail)
		}
	}
	// Selector over labels; a numeric max_failures; an explicit target.
	var ro ota.Rollout
	body := map[string]any{"release": "1.0.0", "target": arm64T, "selector": "site=north", "max_failures": 1}
	if st := r.api("POST", "/api/v1/ota/rollouts", body, &ro); st != 201 || ro.Total != 2 || ro.MaxFailures != "1" || ro.Selector != "site=north" {
		t.Fatalf("selector rollout: %d %+v", st, ro)
	}
	// Those devices are busy now.
	var e apiErr
	if st := r.api("POST", "/api/v1/ota/rollouts", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-1", "gw-2"}}, &e); st != 409 || !strings.Contains(e.Detail, "gw-2 ("+ro.ID+")") {
		t.Fatalf("busy device: %d %+v", st, e)
	}
	// A downgrade the operator means.
	if st := r.api("POST", "/api/v1/ota/rollouts", ota.RolloutRequest{Release: "1.1.0", Devices: []string{"gw-new"}, AllowDowngrade: true}, &ro); st != 201 || !ro.AllowDowngrade {
		t.Fatalf("allowed downgrade: %d %+v", st, ro)
	}
}

func TestConfigValidation(t *testing.T) {
	k := newKeys(t)
	bad := filepath.Join(t.TempDir(), "bad.pub")
	if err := os.WriteFile(bad, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := hub.DefaultConfig()
	if c.OTA.MaxDownloads != 32 || c.OTA.MaxArtifactSize != 256<<20 || c.OTA.PublicURL != "" || c.OTA.ArtifactDir != "" {
		t.Fatalf("defaults %+v", c.OTA)
	}
	c.OTA.ReleaseKeys = []string{k.pub, bad, filepath.Join(t.TempDir(), "missing.pub")}
	c.OTA.MaxDownloads = 0
	c.OTA.MaxArtifactSize = -1
	c.OTA.PublicURL = "http://hub.example.org:8443"
	err := c.Validate()
	if err == nil {
		t.Fatal("bad ota config accepted")
	}
	for _, key := range []string{"ota.release_keys[1]: manifest: no PEM PUBLIC KEY block", "ota.release_keys[2]:", "ota.max_downloads:", "ota.max_artifact_size:", "ota.public_url:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("problems lack %q:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "ota.release_keys[0]") {
		t.Errorf("a good key file was reported: %v", err)
	}
	c = hub.DefaultConfig()
	c.OTA.ReleaseKeys = []string{k.pub}
	c.OTA.PublicURL = "https://updates.example.org/outpost"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
