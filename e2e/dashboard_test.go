package e2e

// The dashboard in a real browser: headless Chromium (Debian's package)
// driven over the DevTools protocol with chromedp, against the real hub
// binary over HTTPS, with real MQTT clients making things happen.

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	outposthub "github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/hub/web"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// chromium finds Debian's chromium; if it is missing and this process may
// install packages, it installs it (CI runs scripts/deps.sh, which does the
// same). It skips only when the browser is absent and cannot be installed.
func chromium(t testing.TB) string {
	t.Helper()
	find := func() string {
		for _, p := range []string{os.Getenv("OUTPOST_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
			if p == "" {
				continue
			}
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("apt-get"); err == nil {
			t.Log("chromium missing: installing Debian's chromium (as scripts/deps.sh does)")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			sh := "apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null"
			if out, err := exec.CommandContext(ctx, "sh", "-c", sh).CombinedOutput(); err != nil {
				t.Logf("installing chromium failed: %v\n%s", err, out)
			}
			if p := find(); p != "" {
				return p
			}
		}
	}
	t.Skip("headless Chromium is not installed and cannot be installed here (not root, or no apt-get): run scripts/deps.sh or set OUTPOST_CHROMIUM")
	return ""
}

// spkiHash is the base64 SHA-256 of the hub's server key, for Chromium's
// --ignore-certificate-errors-spki-list: the browser trusts that one key
// (the hub's own CA is not in its store), and still checks everything else.
func spkiHash(t testing.TB, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// artifacts is where screenshots go: $OUTPOST_ARTIFACTS/<test> or a temp dir.
func artifacts(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("OUTPOST_ARTIFACTS"); d != "" {
		dir := filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

type browser struct {
	t   testing.TB
	ctx context.Context
	art string
	n   int

	mu         sync.Mutex
	exceptions []string // uncaught JavaScript exceptions
}

// newBrowser starts headless Chromium with a fresh profile that trusts the
// hub's server key.
func newBrowser(t testing.TB, serverCert string) *browser {
	t.Helper()
	exe := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, serverCert)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx, chromedp.WithErrorf(func(string, ...any) {}))
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a deadline
		t.Fatalf("start chromium %s: %v", exe, err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, ctx: ctx, art: artifacts(t)}
	thrown := chromedp.Events(ctx, cdpruntime.ExceptionThrown)
	go func() {
		for ev, err := range thrown {
			if err != nil {
				return // the browser's context ended
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.mu.Lock()
			b.exceptions = append(b.exceptions, fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1))
			b.mu.Unlock()
		}
	}()
	return b
}

// noExceptions fails the test if a page threw an uncaught exception.
func (b *browser) noExceptions() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.exceptions) > 0 {
		b.t.Fatalf("uncaught JavaScript exceptions:\n%s", strings.Join(b.exceptions, "\n"))
	}
}

// a11y checks the current page for what a screen reader or a keyboard user
// cannot get past: unlabelled fields, nameless buttons and links, images
// without alt, no h1, duplicate ids.
func (b *browser) a11y(page string) {
	b.t.Helper()
	bad := eval[[]string](b, `(() => {
		const bad = [];
		const ids = new Set();
		for (const el of document.querySelectorAll('[id]')) { if (ids.has(el.id)) bad.push('duplicate id ' + el.id); ids.add(el.id); }
		for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
			const ok = (el.id && document.querySelector('label[for="' + el.id + '"]')) || el.closest('label') || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
			if (!ok) bad.push('unlabelled field ' + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll('button, a[href]')) {
			if (!(el.textContent.trim() || el.getAttribute('aria-label'))) bad.push('nameless ' + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll('img:not([alt])')) bad.push('img without alt ' + el.outerHTML.slice(0, 80));
		if (document.querySelectorAll('h1').length !== 1) bad.push(document.querySelectorAll('h1').length + ' h1 elements');
		if (!document.documentElement.lang) bad.push('no lang');
		return bad;
	})()`)
	if len(bad) > 0 {
		b.t.Errorf("accessibility problems on the %s page:\n  %s", page, strings.Join(bad, "\n  "))
	}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// wait polls a JavaScript predicate until it is truthy. It survives
// navigations (the predicate's document may go away while it runs).
func (b *browser) wait(what, js string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+js+")"))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
	// What the page showed, for a failure seen only in CI.
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash + ' | live: ' + (document.getElementById('live')?.dataset.state || '?') + ' | ' + (document.body?.innerText || '').slice(0, 1500)`))
	cancel()
	b.t.Fatalf("browser: timed out after %v waiting for %s (last error: %v)\npage: %s (%v)", within, what, last, page, err)
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("browser: eval %.60q: %v", js, err)
	}
	return v
}

// shot saves a full-page PNG as a test artefact and logs its path.
func (b *browser) shot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.n++
	p := filepath.Join(b.art, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
	return p
}

// login fills the login form with token.
func (b *browser) login(base, token string) {
	b.t.Helper()
	b.do("open login", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.ID("token")))
	b.do("fill login", chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Submit(chromedp.ID("token")))
}

// click follows one of the app's own links or buttons.
func (b *browser) click(what, css string) {
	b.t.Helper()
	b.do(what, chromedp.WaitVisible(chromedp.CSS(css)), chromedp.Click(chromedp.CSS(css)))
}

// httpSession is a plain HTTP client with a cookie jar, for the refusals.
func httpSession(t testing.TB, h *hub) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	tc, err := certs.ClientTLS(filepath.Join(h.dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func postForm(t testing.TB, c *http.Client, u string, v url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func statusOf(t testing.TB, c *http.Client, method, u string, hdr map[string]string, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func mqttPublish(t testing.TB, c *mqtttest.Client, topic string, qos byte, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: b})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	if r != nil && r.ReasonCode != 0 {
		t.Fatalf("publish %s: reason 0x%02x", topic, r.ReasonCode)
	}
}

func TestDashboardInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	hubDir := t.TempDir()
	mqttAddr, httpAddr := freePort(t), freePort(t)
	h := startHub(t, hubDir, mqttAddr, httpAddr)
	base := "https://" + httpAddr
	b := newBrowser(t, filepath.Join(hubDir, "pki", "server.crt"))

	// 1. Anonymous: the dashboard sends you to the login page. A wrong token is refused.
	b.do("open dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := eval[string](b, `location.pathname`); loc != "/login" {
		t.Fatalf("anonymous dashboard went to %q, want /login", loc)
	}
	b.a11y("login")
	b.shot("login")
	b.login(base, "not-the-admin-token-"+strings.Repeat("x", 20))
	b.wait("login refused", `document.getElementById('login-error')?.textContent.includes('not the admin token')`, 10*time.Second)
	b.shot("login-refused")
	raw := httpSession(t, h)
	if resp := postForm(t, raw, base+"/login", url.Values{"token": {"wrong"}}); resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong login over HTTP: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	// 2. Log in; the fleet page is empty.
	b.login(base, h.admin)
	b.wait("fleet page", `document.querySelector('#fleet-table') && document.documentElement.dataset.fleetRendered`, 15*time.Second)
	if eval[bool](b, `document.cookie.includes('outpost_session')`) {
		t.Fatal("the session cookie is readable from JavaScript (not HttpOnly)")
	}
	b.do("mark page", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = 'yes'`))

	// 3. A real MQTT client connects: the device appears online, live.
	tokRaw := strings.TrimSpace(h.ctl(t, "token", "issue", "--device", "gw-live", "--profile", "gateway", "--ttl", "1h"))
	tc, err := certs.ClientTLS(filepath.Join(hubDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := mqtttest.Dial(context.Background(), mqttAddr, "gw-live", tokRaw, mqtttest.Options{TLS: tc, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Conn.Close()
	b.wait("gw-live online in the fleet table", `document.querySelector('tr[data-device="gw-live"]')?.dataset.state === 'online'`, 15*time.Second)

	// Real readings for the chart: an hour of a tank temperature every 10 s
	// and a pH every 30 s, plus a raised alert; and a heartbeat with firmware.
	now := time.Now()
	var recs []protocol.Record
	seq := uint64(0)
	for i := 0; i < 360; i++ {
		seq++
		v := 21 + 2*math.Sin(float64(i)/25)
		recs = append(recs, protocol.Record{Seq: seq, Kind: protocol.KindReading, Time: now.Add(-time.Duration(360-i) * 10 * time.Second).UnixMilli(), Sensor: "tank", Value: &v, Unit: "C"})
		if i%3 == 0 {
			seq++
			p := 6.8 + 0.3*math.Cos(float64(i)/40)
			recs = append(recs, protocol.Record{Seq: seq, Kind: protocol.KindReading, Time: now.Add(-time.Duration(360-i) * 10 * time.Second).UnixMilli(), Sensor: "ph", Value: &p})
		}
	}
	seq++
	recs = append(recs, protocol.Record{Seq: seq, Kind: protocol.KindAlert, Time: now.UnixMilli(), Sensor: "tank",
		Alert: &protocol.Alert{Rule: "temp-high", State: protocol.AlertRaised, Severity: "warning", Value: 23.4, Window: "avg 1m", Since: now.Add(-time.Minute).UnixMilli(), Message: "tank above 23 C"}})
	for len(recs) > 0 {
		n := min(len(recs), protocol.MaxBatch)
		mqttPublish(t, cl, protocol.DeviceTopic("gw-live", protocol.SufLog), 1, protocol.Batch{V: 1, Records: recs[:n]})
		recs = recs[n:]
	}
	cpu := 48.5
	mqttPublish(t, cl, protocol.DeviceTopic("gw-live", protocol.SufHeartbeat), 0, protocol.Heartbeat{V: 1, Time: now.UnixMilli(), UptimeS: 3600,
		Firmware: "1.2.0", Sensors: map[string]string{"tank": "ok", "ph": "ok"}, CPUTempC: &cpu})
	b.shot("fleet-online")

	// 4. Kill the client (close the TCP connection): offline, live, no reload.
	cl.Conn.Close()
	b.wait("gw-live offline in the fleet table", `document.querySelector('tr[data-device="gw-live"]')?.dataset.state === 'offline'`, 15*time.Second)
	if eval[string](b, `window.__sameDocument`) != "yes" {
		t.Fatal("the page reloaded: presence should arrive over SSE")
	}
	b.wait("live region announced it", `document.getElementById('announce').textContent.includes('gw-live is now offline')`, 5*time.Second)
	b.a11y("fleet")
	b.shot("fleet-offline")

	// 5. Device page: a chart per sensor with the real readings.
	b.click("open device", `a[href="#/device/gw-live"]`)
	b.wait("tank chart", `(() => { const f = document.querySelector('figure.chart[data-sensor="tank"]'); return f && Number(f.dataset.points) > 0 && f.querySelector('canvas'); })()`, 20*time.Second)
	b.wait("ph chart", `Number(document.querySelector('figure.chart[data-sensor="ph"]')?.dataset.points) > 0`, 20*time.Second)
	b.wait("firmware shown", `document.getElementById('device-firmware')?.textContent === '1.2.0'`, 10*time.Second)
	pts := eval[int](b, `Number(document.querySelector('figure.chart[data-sensor="tank"]').dataset.points)`)
	t.Logf("tank chart: %d points over the last hour", pts)
	if pts < 100 {
		t.Fatalf("tank chart has %d points; 360 readings over an hour should give more than 100", pts)
	}
	b.a11y("device")
	b.shot("device")
	b.click("range 24h", `button[data-range="24h"]`)
	b.wait("24h chart", `document.querySelector('button[data-range="24h"]').getAttribute('aria-pressed') === 'true' && Number(document.querySelector('figure.chart[data-sensor="tank"]')?.dataset.points) > 0`, 20*time.Second)

	// 6. Alerts: acknowledge the raised alert.
	b.click("open alerts", `a[data-nav="alerts"]`)
	ackSel := `button[data-ack^="gw-live/temp-high/tank/"]`
	// The device page lists the alert too: wait for the alerts page itself.
	b.wait("alert listed", `document.querySelector('h1')?.textContent === 'Alerts' && document.querySelector('`+ackSel+`')`, 15*time.Second)
	b.a11y("alerts")
	b.shot("alerts")
	b.click("acknowledge", ackSel)
	b.wait("acknowledged", `document.querySelector('.acked')?.textContent.includes('Acknowledged by dashboard')`, 10*time.Second)
	var al struct {
		Alerts []store.Alert `json:"alerts"`
	}
	h.get(t, "/api/v1/alerts?device=gw-live", &al)
	if len(al.Alerts) != 1 || al.Alerts[0].AckedBy != "dashboard" || al.Alerts[0].AckedMS == 0 {
		t.Fatalf("alert after acknowledge: %+v", al.Alerts)
	}
	b.shot("alerts-acknowledged")

	// 7. Tokens: issue one through the form, revoke gw-live's.
	b.click("open tokens", `a[data-nav="tokens"]`)
	b.do("issue form", chromedp.WaitVisible(chromedp.ID("t-device")), chromedp.SendKeys(chromedp.ID("t-device"), "gw-form"),
		chromedp.Click(chromedp.CSS(`#issue-form button[type="submit"]`)))
	b.wait("new token shown", `document.getElementById('new-token')?.value.split('.').length === 3`, 10*time.Second)
	var toks struct {
		Tokens []store.Token `json:"tokens"`
	}
	h.get(t, "/api/v1/tokens?device=gw-live", &toks)
	if len(toks.Tokens) != 1 {
		t.Fatalf("gw-live tokens: %+v", toks.Tokens)
	}
	jti := toks.Tokens[0].JTI
	b.wait("token listed", `document.querySelector('button[data-revoke="`+jti+`"]')`, 10*time.Second)
	b.click("revoke", `button[data-revoke="`+jti+`"]`)
	b.click("confirm revoke", `button[data-confirm="`+jti+`"]`)
	b.wait("revoked", `document.querySelector('.revoked-msg')?.textContent.startsWith('Revoked')`, 10*time.Second)
	b.a11y("tokens")
	b.shot("tokens")
	h.get(t, "/api/v1/tokens?device=gw-live", &toks)
	if toks.Tokens[0].RevokedMS == 0 {
		t.Fatal("token not revoked at the hub")
	}
	if _, err := mqtttest.Dial(context.Background(), mqttAddr, "gw-live", tokRaw, mqtttest.Options{TLS: tc}); err == nil {
		t.Fatal("a token revoked in the dashboard still connects")
	}

	// 8. Rollouts: the OTA API may or may not be there; either way the page says so.
	b.click("open rollouts", `a[data-nav="rollouts"]`)
	b.wait("rollouts page", `document.getElementById('ota-unavailable') || document.querySelector('.page-rollouts table, .page-rollouts p.muted')`, 10*time.Second)
	b.a11y("rollouts")
	b.shot("rollouts")
	// A hub without the OTA API (its routes answer 404): the page says so.
	b.do("back to fleet", chromedp.Evaluate[chromedp.Void](`location.hash = '#/fleet'`))
	b.wait("fleet again", `document.querySelector('#fleet-table')`, 10*time.Second)
	b.do("hub without OTA", chromedp.Evaluate[chromedp.Void](`window.__fetch = window.fetch;
		window.fetch = (u, o) => String(u).startsWith('/api/v1/ota/')
			? Promise.resolve(new Response('{"error":"Not Found"}', {status: 404, headers: {'Content-Type': 'application/json'}}))
			: window.__fetch(u, o);
		location.hash = '#/rollouts';`))
	b.wait("OTA not available", `document.getElementById('ota-unavailable')?.textContent.includes('OTA is not available')`, 10*time.Second)
	b.shot("rollouts-without-ota")
	b.do("restore fetch", chromedp.Evaluate[chromedp.Void](`window.fetch = window.__fetch`))

	// 9. CSRF: from the logged-in page, a forged or missing token is refused.
	got := eval[[]int](b, `(async () => {
		const post = (hdr) => fetch('/api/v1/alerts/ack', {method: 'POST', headers: {'Content-Type': 'application/json', ...hdr}, body: '{}'}).then(r => r.status);
		const good = document.querySelector('meta[name="csrf-token"]').content;
		return [await post({'X-CSRF-Token': 'forged-' + good.slice(7)}), await post({}), await post({'X-CSRF-Token': good})];
	})()`)
	if fmt.Sprint(got) != "[403 403 400]" {
		t.Fatalf("POST with forged, missing and right CSRF token: %v, want [403 403 400] (400: the API judged the empty body)", got)
	}

	// 10. Phone-sized screen.
	b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Evaluate[chromedp.Void](`location.hash = '#/fleet'`))
	b.wait("fleet on a phone", `document.querySelector('tr[data-device="gw-live"]')`, 10*time.Second)
	b.a11y("fleet (phone)")
	b.shot("fleet-phone")
	b.click("open device on a phone", `a[href="#/device/gw-live"]`)
	b.wait("chart on a phone", `Number(document.querySelector('figure.chart[data-sensor="tank"]')?.dataset.points) > 0`, 20*time.Second)
	b.shot("device-phone")
	b.do("desktop viewport", chromedp.EmulateViewport(1280, 900))

	// 11. Log out: the session is gone.
	b.click("log out", `form.logout button`)
	b.wait("logged out", `location.pathname === '/login' && document.querySelector('.notice')?.textContent.includes('logged out')`, 10*time.Second)
	b.do("dashboard after logout", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("token")))

	// Over plain HTTP too: forged and missing CSRF tokens are refused with 403 JSON.
	if resp := postForm(t, raw, base+"/login", url.Values{"token": {h.admin}}); resp.StatusCode != 303 {
		t.Fatalf("login over HTTP: %d", resp.StatusCode)
	}
	for _, hdr := range []map[string]string{{}, {web.CSRFHeader: "forged"}} {
		if st := statusOf(t, raw, "DELETE", base+"/api/v1/tokens/"+jti, hdr, ""); st != 403 {
			t.Fatalf("DELETE with CSRF header %v: %d, want 403", hdr, st)
		}
	}
	if st := statusOf(t, raw, "GET", base+"/api/v1/devices", nil, ""); st != 200 {
		t.Fatalf("GET with the session: %d", st)
	}
	b.noExceptions()
}

func TestDashboardSessionExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	t.Setenv("OUTPOST_HUB_SESSION_TTL", "3s")
	hubDir := t.TempDir()
	h := startHub(t, hubDir, freePort(t), freePort(t))
	base := "https://" + h.http

	// Plain HTTP: a session works, then expires.
	raw := httpSession(t, h)
	if resp := postForm(t, raw, base+"/login", url.Values{"token": {h.admin}}); resp.StatusCode != 303 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if st := statusOf(t, raw, "GET", base+"/api/v1/devices", nil, ""); st != 200 {
		t.Fatalf("fresh session: %d", st)
	}

	b := newBrowser(t, filepath.Join(hubDir, "pki", "server.crt"))
	b.login(base, h.admin)
	b.wait("fleet page", `document.documentElement.dataset.fleetRendered`, 15*time.Second)
	time.Sleep(3500 * time.Millisecond)
	if st := statusOf(t, raw, "GET", base+"/api/v1/devices", nil, ""); st != 401 {
		t.Fatalf("expired session: %d, want 401", st)
	}
	// The next API call of the page finds the session gone and goes to the login page.
	b.click("open tokens", `a[data-nav="tokens"]`)
	b.wait("back at login", `location.pathname === '/login' && document.querySelector('.notice')?.textContent.includes('session has ended')`, 10*time.Second)
	b.shot("session-expired")
	if st := eval[int](b, `fetch('/api/v1/devices').then(r => r.status)`); st != 401 {
		t.Fatalf("browser's API call after expiry: %d", st)
	}
}

// adminDo sends an admin API request with the bearer and decodes the JSON answer.
func adminDo(t testing.TB, c *http.Client, h *outposthub.Hub, method, path, ctype string, body io.Reader, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, h.Addrs().HTTPURL+path, body)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken())
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

// TestDashboardRollouts: a real rollout (signed release uploaded, waves,
// one device reporting progress over MQTT) on the Rollouts page, paused,
// resumed and aborted from the browser.
func TestDashboardRollouts(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	keys := t.TempDir()
	if _, err := manifest.Keygen(keys, false); err != nil {
		t.Fatal(err)
	}
	h, dir := inProcessHub(t, func(c *outposthub.Config) { c.OTA.ReleaseKeys = []string{filepath.Join(keys, "release.pub")} })
	ctx := context.Background()
	c := benchClient(t, dir)

	// A signed release.
	art := filepath.Join(t.TempDir(), "outpost-gateway")
	if err := os.WriteFile(art, []byte(strings.Repeat("firmware ", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := manifest.LoadPrivateKey(filepath.Join(keys, "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Sign(key, art, "1.3.0", manifest.Target{OS: "linux", Arch: "arm64"}, "dashboard test"); err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	mw := multipart.NewWriter(&body)
	for _, part := range []struct{ name, file string }{{ota.PartManifest, art + manifest.ManifestSuffix}, {ota.PartArtifact, art}} {
		w, _ := mw.CreateFormFile(part.name, filepath.Base(part.file))
		b, _ := os.ReadFile(part.file)
		_, _ = w.Write(b)
	}
	_ = mw.Close()
	if st := adminDo(t, c, h, "POST", "/api/v1/ota/releases", mw.FormDataContentType(), strings.NewReader(body.String()), nil); st != 201 && st != 200 {
		t.Fatalf("upload release: %d", st)
	}

	// Four known devices, two waves.
	devs := []string{"gw-r1", "gw-r2", "gw-r3", "gw-r4"}
	for _, d := range devs {
		if err := h.Store().SetLabels(ctx, d, map[string]string{"site": "north"}); err != nil {
			t.Fatal(err)
		}
	}
	var ro struct {
		ID      string
		Devices []struct{ Device, State string }
	}
	req, _ := json.Marshal(map[string]any{"release": "1.3.0", "devices": devs, "waves": []string{"50%", "100%"}, "max_failures": "1"})
	if st := adminDo(t, c, h, "POST", "/api/v1/ota/rollouts", "application/json", strings.NewReader(string(req)), &ro); st != 201 {
		t.Fatalf("create rollout: %d", st)
	}
	// One device of the first wave reports its download over MQTT.
	var first string
	for _, d := range ro.Devices {
		if d.State == protocol.OTANotified {
			first = d.Device
			break
		}
	}
	if first == "" {
		t.Fatalf("no device notified in the first wave: %+v", ro.Devices)
	}
	pub, sub := protocol.GatewayGrants(first)
	tok, _, err := h.Issue(ctx, token.Request{Device: first, Pub: pub, Sub: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := certs.ClientTLS(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := mqtttest.Dial(ctx, h.Addrs().MQTT, first, tok, mqtttest.Options{TLS: tc, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Conn.Close()
	mqttPublish(t, cl, protocol.DeviceTopic(first, protocol.SufOTAStatus), 1, protocol.OTAStatus{V: 1, Rollout: ro.ID, Release: "1.3.0",
		State: protocol.OTADownloading, Bytes: 16384, Total: 36864, Firmware: "1.2.0", Time: time.Now().UnixMilli()})

	base := h.Addrs().HTTPURL
	b := newBrowser(t, filepath.Join(dir, "pki", "server.crt"))
	b.login(base, h.AdminToken())
	b.wait("fleet", `document.documentElement.dataset.fleetRendered`, 15*time.Second)
	b.click("open rollouts", `a[data-nav="rollouts"]`)
	b.wait("rollout listed", `document.querySelector('a[href="#/rollouts/`+ro.ID+`"]')`, 10*time.Second)
	b.shot("rollouts")
	b.click("open rollout", `a[href="#/rollouts/`+ro.ID+`"]`)
	state := func(s string) string {
		return `document.querySelector('#rollout h1 .state')?.textContent === '` + s + `'`
	}
	b.wait("rollout active", state("active"), 10*time.Second)
	b.a11y("rollout")
	b.wait("device downloading", `[...document.querySelectorAll('#rollout tr')].some(tr => tr.textContent.includes('`+first+`') && tr.textContent.includes('downloading') && tr.textContent.includes('44 %'))`, 15*time.Second)
	b.shot("rollout")
	b.click("pause", `button[data-action="pause"]`)
	b.wait("paused", state("paused"), 10*time.Second)
	b.click("resume", `button[data-action="resume"]`)
	b.wait("resumed", state("active"), 10*time.Second)
	b.click("abort", `button[data-action="abort"]`)
	b.wait("aborted", state("aborted")+` && document.querySelector('#rollout').textContent.includes('has been aborted')`, 10*time.Second)
	b.shot("rollout-aborted")
	var after struct{ State string }
	adminDo(t, c, h, "GET", "/api/v1/ota/rollouts/"+ro.ID, "", nil, &after)
	if after.State != "aborted" {
		t.Fatalf("rollout state at the hub: %q", after.State)
	}
	// The device page lists the rollout among its firmware updates.
	b.do("device page", chromedp.Evaluate[chromedp.Void](`location.hash = '#/device/`+first+`'`))
	b.wait("update history", `document.querySelector('#device-updates a[href="#/rollouts/`+ro.ID+`"]')`, 10*time.Second)
	b.noExceptions()
}

// TestDashboardPendingDevices: with claims.auto_accept off, a device that
// announces itself with a claim token waits on the fleet page; the operator
// accepts it there (hub/claims_test.go checks that the next announcement
// then gets its channel token).
func TestDashboardPendingDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	h, dir := inProcessHub(t, func(c *outposthub.Config) { c.Claims.AutoAccept = false })
	ctx := context.Background()
	c := benchClient(t, dir)
	var cr struct{ Token string }
	body := `{"ttl":"1h","labels":{"site":"pond"}}`
	if st := adminDo(t, c, h, "POST", "/api/v1/claims", "application/json", strings.NewReader(body), &cr); st != 201 || cr.Token == "" {
		t.Fatalf("create claim: %d", st)
	}
	tc, err := certs.ClientTLS(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	const id = "pi-pending"
	cl, err := mqtttest.Dial(ctx, h.Addrs().MQTT, id, cr.Token, mqtttest.Options{TLS: tc, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Conn.Close()
	mqttPublish(t, cl, protocol.ClaimTopic(id, protocol.SufClaimReq), 1,
		protocol.ClaimRequest{V: protocol.Version, Device: id, Firmware: "1.0.0", Board: "Raspberry Pi Zero 2 W", Arch: "linux/arm64"})

	b := newBrowser(t, filepath.Join(dir, "pki", "server.crt"))
	b.login(h.Addrs().HTTPURL, h.AdminToken())
	b.wait("fleet", `document.documentElement.dataset.fleetRendered`, 15*time.Second)
	b.wait("pending device listed", `!document.querySelector('#pending').hidden && document.querySelector('#pending').textContent.includes('`+id+`') && document.querySelector('#pending').textContent.includes('Raspberry Pi Zero 2 W')`, 15*time.Second)
	b.a11y("fleet-pending")
	b.shot("fleet-pending")
	b.click("accept", `#pending button[data-action="accept"][data-device="`+id+`"]`)
	b.wait("pending list empty", `document.querySelector('#pending').hidden`, 10*time.Second)
	b.noExceptions()

	// Accepted at the hub: the device exists with the claim's labels.
	var d struct{ Labels map[string]string }
	if st := adminDo(t, c, h, "GET", "/api/v1/devices/"+id, "", nil, &d); st != 200 || d.Labels["site"] != "pond" {
		t.Fatalf("device after accept: %d %+v", st, d)
	}
	var cs struct {
		Claims []struct {
			Devices []struct{ ID, State string } `json:"devices"`
		} `json:"claims"`
	}
	adminDo(t, c, h, "GET", "/api/v1/claims", "", nil, &cs)
	if len(cs.Claims) != 1 || len(cs.Claims[0].Devices) != 1 || cs.Claims[0].Devices[0].State != "accepted" {
		t.Fatalf("claims after accept: %+v", cs)
	}
}

// ---- Benchmarks -------------------------------------------------------------
//
// go test -short -run '^$' -bench Dashboard -benchtime 5x ./e2e
// (-short skips building the race-enabled binaries the tests above need.)

// inProcessHub runs a hub in this process, so the store can be seeded
// directly and its configuration set.
func inProcessHub(b testing.TB, mut ...func(*outposthub.Config)) (*outposthub.Hub, string) {
	b.Helper()
	cfg := outposthub.DefaultConfig()
	cfg.DataDir = b.TempDir()
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	for _, m := range mut {
		m(&cfg)
	}
	h, err := outposthub.New(context.Background(), cfg, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return h, cfg.DataDir
}

func benchHub(b *testing.B) (*outposthub.Hub, string) { return inProcessHub(b) }

func benchClient(b testing.TB, dataDir string) *http.Client {
	tc, err := certs.ClientTLS(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		b.Fatal(err)
	}
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
}

// BenchmarkDashboardFleetFirstRender10k: a fresh load of the fleet page
// (HTML, CSS, modules, GET /api/v1/devices, table) with 10,000 devices, until
// the first page of rows is in the DOM.
func BenchmarkDashboardFleetFirstRender10k(b *testing.B) {
	h, dir := benchHub(b)
	ctx := context.Background()
	const n = 10000
	start := time.Now()
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		go func(w int) {
			var err error
			for i := w; i < n && err == nil; i += 16 {
				id := fmt.Sprintf("gw-%05d", i)
				err = h.Store().SetLabels(ctx, id, map[string]string{"site": fmt.Sprintf("site-%d", i%20), "role": "tank"})
				if err == nil && i%10 < 7 {
					err = h.Store().SaveTransition(ctx, store.Transition{Device: id, TimeMS: time.Now().UnixMilli(), State: "online", Reason: "connected", Epoch: 1}, 15, "1.2.0", 0)
				}
			}
			errs <- err
		}(w)
	}
	for w := 0; w < 16; w++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("seeded %d devices in %v", n, time.Since(start))
	base := h.Addrs().HTTPURL

	// The devices JSON the page fetches.
	req, _ := http.NewRequest("GET", base+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+h.AdminToken())
	t0 := time.Now()
	resp, err := benchClient(b, dir).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.Logf("GET /api/v1/devices: %d devices, %d bytes, %v", n, len(body), time.Since(t0))

	br := newBrowser(b, filepath.Join(dir, "pki", "server.crt"))
	br.login(base, h.AdminToken())
	br.wait("fleet", `document.documentElement.dataset.fleetRendered`, time.Minute)
	b.ResetTimer()
	var renders, fetches, fetched, wire []float64
	for i := 0; i < b.N; i++ {
		br.do("blank", chromedp.Navigate("about:blank"))
		br.do("fleet", chromedp.Navigate(base+"/#/fleet"))
		br.wait("rendered", `document.documentElement.dataset.fleetRendered && document.querySelectorAll('#fleet-table tbody tr').length === 200`, time.Minute)
		// Milliseconds since navigation start: first rows in the DOM; the
		// devices JSON's fetch (its duration, and when it had arrived).
		m := eval[[]float64](br, `(() => { const f = performance.getEntriesByType('resource').find(e => e.name.endsWith('/api/v1/devices'));
			return [performance.getEntriesByName('outpost:fleet-rendered')[0].startTime, f.duration, f.responseEnd, f.encodedBodySize]; })()`)
		renders, fetches, fetched, wire = append(renders, m[0]), append(fetches, m[1]), append(fetched, m[2]), append(wire, m[3])
	}
	b.StopTimer()
	b.ReportMetric(median(renders), "ms-first-render")
	b.ReportMetric(median(fetches), "ms-devices-fetch")
	b.ReportMetric(median(fetched), "ms-devices-arrived")
	b.ReportMetric(float64(len(body)), "devices-json-bytes")
	b.ReportMetric(median(wire), "devices-wire-bytes")
	br.shot("fleet-10k")
}

// BenchmarkDashboardChartQuery7d: the device chart's query for 7 days of
// 1 Hz readings of one sensor (604,800 rows), downsampled to 1,000 points.
func BenchmarkDashboardChartQuery7d(b *testing.B) {
	h, dir := benchHub(b)
	ctx := context.Background()
	const n = 7 * 24 * 3600
	end := time.Now().Truncate(time.Second)
	t0 := end.Add(-n * time.Second).UnixMilli()
	start := time.Now()
	batch := make([]protocol.Record, 0, 5000)
	for i := 0; i < n; i++ {
		v := 20 + 3*math.Sin(float64(i)/3600)
		batch = append(batch, protocol.Record{Seq: uint64(i + 1), Kind: protocol.KindReading, Time: t0 + int64(i)*1000, Sensor: "tank", Value: &v, Unit: "C"})
		if len(batch) == cap(batch) || i == n-1 {
			if err := h.Store().AppendLog(ctx, "gw-week", batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.Logf("seeded %d readings in %v", n, time.Since(start))
	c := benchClient(b, dir)
	base := h.Addrs().HTTPURL
	for _, r := range []struct {
		name string
		span time.Duration
	}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}} {
		b.Run(r.name, func(b *testing.B) {
			u := fmt.Sprintf("%s/api/v1/devices/gw-week/readings?sensor=tank&from=%d&to=%d&points=1000", base, end.Add(-r.span).UnixMilli(), end.UnixMilli())
			var points int
			var size int
			for i := 0; i < b.N; i++ {
				req, _ := http.NewRequest("GET", u, nil)
				req.Header.Set("Authorization", "Bearer "+h.AdminToken())
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var out struct {
					Points []store.Point `json:"points"`
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 {
					b.Fatalf("%d %v", resp.StatusCode, err)
				}
				points, size = len(out.Points), len(raw)
			}
			b.ReportMetric(float64(points), "points")
			b.ReportMetric(float64(size), "bytes")
		})
	}
}

// BenchmarkDashboardAssets reports what a browser downloads for the fleet
// page and for a device page (everything embedded; gzip as served).
func BenchmarkDashboardAssets(b *testing.B) {
	sizes := map[string]web.AssetSize{}
	for _, s := range web.AssetSizes() {
		sizes[s.Path] = s
	}
	fleet := []string{"app.css", "icon.svg", "js/app.js", "js/util.js", "js/fleet.js"}
	device := append(append([]string{}, fleet...), "js/device.js", "js/alerts.js", "js/tokens.js", "js/rollouts.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css")
	sum := func(ps []string) (raw, gz int) {
		for _, p := range ps {
			s, ok := sizes[p]
			if !ok {
				b.Fatalf("asset %s missing", p)
			}
			raw += s.Raw
			gz += s.Gz
		}
		return
	}
	for i := 0; i < b.N; i++ {
		_, _ = sum(fleet)
	}
	fr, fg := sum(fleet)
	dr, dg := sum(device)
	var all []string
	for p := range sizes {
		all = append(all, p)
	}
	sort.Strings(all)
	ar, ag := sum(all)
	var table strings.Builder
	for _, p := range all {
		fmt.Fprintf(&table, "\n%-34s %7d B  gzip %6d B", p, sizes[p].Raw, sizes[p].Gz)
	}
	b.Log(table.String())
	b.ReportMetric(float64(fr), "fleet-B")
	b.ReportMetric(float64(fg), "fleet-gzip-B")
	b.ReportMetric(float64(dr), "device-B")
	b.ReportMetric(float64(dg), "device-gzip-B")
	b.ReportMetric(float64(ar), "all-B")
	b.ReportMetric(float64(ag), "all-gzip-B")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
