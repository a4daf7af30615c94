package web

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const admin = "0123456789abcdef0123456789abcdef"

// fakeAPI stands in for api.Server.Handler: it records the Authorization it
// saw and, like the real API, refuses anything but the admin bearer.
type fakeAPI struct {
	mu   sync.Mutex
	auth []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.URL.Path == "/healthz" {
		w.WriteHeader(200)
		return
	}
	if r.URL.Path == "/api/v1/stream" { // an event stream that runs until its request ends
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	if r.URL.Path == "/api/v1/events" {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, ": hello\n\n")
		w.(http.Flusher).Flush()
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+admin {
		writeJSON(w, 401, "Unauthorized", "missing or wrong admin token")
		return
	}
	writeJSON(w, 200, "ok", r.Method+" "+r.URL.Path)
}

func (f *fakeAPI) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auth) == 0 {
		return "<none>"
	}
	return f.auth[len(f.auth)-1]
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock                   { return &clock{t: time.Unix(1_800_000_000, 0)} }
func (c *clock) opts(api http.Handler) Options {
	return Options{API: api, AdminToken: admin, SessionTTL: time.Hour, Now: c.now}
}

type rig struct {
	t   *testing.T
	h   http.Handler
	api *fakeAPI
	clk *clock
}

func newRig(t *testing.T) *rig {
	f := &fakeAPI{}
	c := newClock()
	return &rig{t: t, h: New(c.opts(f)).Handler(), api: f, clk: c}
}

type req struct {
	method, path, body string
	cookie             *http.Cookie
	header             map[string]string
	tls                bool
	remote             string
}

func (r *rig) do(q req) *httptest.ResponseRecorder {
	r.t.Helper()
	hr := httptest.NewRequest(q.method, "https://hub.test"+q.path, strings.NewReader(q.body))
	hr.Host = "hub.test"
	if q.method == "POST" && strings.HasPrefix(q.path, "/log") {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if !q.tls {
		hr.TLS = nil
	} else {
		hr.TLS = &tls.ConnectionState{}
	}
	if q.remote != "" {
		hr.RemoteAddr = q.remote
	}
	if q.cookie != nil {
		hr.AddCookie(q.cookie)
	}
	for k, v := range q.header {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, hr)
	return w
}

// login logs in and returns the session cookie and the page's CSRF token.
func (r *rig) login() (*http.Cookie, string) {
	r.t.Helper()
	w := r.do(req{method: "POST", path: "/login", body: "token=" + admin, tls: true})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		r.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var c *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == CookieName {
			c = k
		}
	}
	if c == nil {
		r.t.Fatal("login set no session cookie")
	}
	page := r.do(req{method: "GET", path: "/", cookie: c})
	if page.Code != 200 {
		r.t.Fatalf("index after login: %d", page.Code)
	}
	m := regexp.MustCompile(`name="csrf-token" content="([^"]+)"`).FindStringSubmatch(page.Body.String())
	if m == nil {
		r.t.Fatal("index has no CSRF token")
	}
	return c, m[1]
}

func TestLoginSetsAStrictSessionCookie(t *testing.T) {
	r := newRig(t)
	w := r.do(req{method: "POST", path: "/login", body: "token=" + admin, tls: true})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d", w.Code)
	}
	sc := w.Header().Get("Set-Cookie")
	for _, want := range []string{CookieName + "=", "Path=/", "HttpOnly", "Secure", "SameSite=Strict", "Max-Age=3600"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
	c := w.Result().Cookies()[0]
	if len(c.Value) != 43 { // 32 bytes, base64url unpadded
		t.Errorf("session id %q is not 256 bits", c.Value)
	}
	// Over plain HTTP (loopback only) the cookie cannot be Secure.
	w = r.do(req{method: "POST", path: "/login", body: "token=" + admin})
	if strings.Contains(w.Header().Get("Set-Cookie"), "Secure") {
		t.Error("Secure cookie over plain HTTP")
	}
	// Two logins, two different ids.
	w2 := r.do(req{method: "POST", path: "/login", body: "token=" + admin, tls: true})
	if w2.Result().Cookies()[0].Value == c.Value {
		t.Error("session ids repeat")
	}
}

func TestLoginRefusals(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name   string
		q      req
		status int
	}{
		{"wrong token", req{method: "POST", path: "/login", body: "token=" + strings.Repeat("x", len(admin))}, 401},
		{"prefix of the token", req{method: "POST", path: "/login", body: "token=" + admin[:10]}, 401},
		{"empty", req{method: "POST", path: "/login", body: "token="}, 401},
		{"no form", req{method: "POST", path: "/login"}, 401},
		{"cross-site origin", req{method: "POST", path: "/login", body: "token=" + admin, header: map[string]string{"Origin": "https://evil.test"}}, 403},
		{"cross-site fetch", req{method: "POST", path: "/login", body: "token=" + admin, header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.remote = fmt.Sprintf("192.0.2.%d:1", i+1) // a throttle bucket of its own
			w := r.do(tc.q)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if w.Header().Get("Set-Cookie") != "" {
				t.Fatal("refused login set a cookie")
			}
			if tc.status == 401 && !strings.Contains(w.Body.String(), "not the admin token") {
				t.Fatalf("no error shown: %s", w.Body)
			}
		})
	}
}

func TestLoginThrottle(t *testing.T) {
	r := newRig(t)
	bad := req{method: "POST", path: "/login", body: "token=nope", remote: "198.51.100.7:5000"}
	for i := 0; i < loginFailures; i++ {
		if w := r.do(bad); w.Code != 401 {
			t.Fatalf("attempt %d: %d", i, w.Code)
		}
	}
	good := req{method: "POST", path: "/login", body: "token=" + admin, remote: "198.51.100.7:5001"}
	if w := r.do(good); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d, want 429", loginFailures, w.Code)
	}
	// Another address is not affected; the window passes.
	if w := r.do(req{method: "POST", path: "/login", body: "token=" + admin, remote: "198.51.100.8:1"}); w.Code != 303 {
		t.Fatalf("other address: %d", w.Code)
	}
	r.clk.advance(loginWindow)
	if w := r.do(good); w.Code != 303 {
		t.Fatalf("after the window: %d", w.Code)
	}
}

func TestSessionStandsInForTheBearer(t *testing.T) {
	r := newRig(t)
	c, tok := r.login()

	// Reads need only the session.
	w := r.do(req{method: "GET", path: "/api/v1/devices", cookie: c})
	if w.Code != 200 || r.api.last() != "Bearer "+admin {
		t.Fatalf("GET with session: %d, API saw %q", w.Code, r.api.last())
	}
	// Changes need the session's CSRF token.
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"missing CSRF token", nil, 403},
		{"forged CSRF token", map[string]string{CSRFHeader: "forged"}, 403},
		{"another session's token", map[string]string{CSRFHeader: random256()}, 403},
		{"right token, cross-site origin", map[string]string{CSRFHeader: tok, "Origin": "https://evil.test"}, 403},
		{"right token, null origin", map[string]string{CSRFHeader: tok, "Origin": "null"}, 403},
		{"right token, cross-site fetch", map[string]string{CSRFHeader: tok, "Sec-Fetch-Site": "cross-site"}, 403},
		{"right token", map[string]string{CSRFHeader: tok}, 200},
		{"right token, same origin", map[string]string{CSRFHeader: tok, "Origin": "https://hub.test", "Sec-Fetch-Site": "same-origin"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
				before := len(r.api.auth)
				w := r.do(req{method: m, path: "/api/v1/tokens/x", cookie: c, header: tc.header})
				if w.Code != tc.status {
					t.Fatalf("%s: %d, want %d: %s", m, w.Code, tc.status, w.Body)
				}
				if tc.status == 403 {
					var body struct{ Error, Detail string }
					if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error != "Forbidden" {
						t.Fatalf("403 body not the API's JSON: %s", w.Body)
					}
					if len(r.api.auth) != before {
						t.Fatal("refused request reached the API")
					}
				}
			}
		})
	}
	// The CSRF token is per session.
	c2, tok2 := r.login()
	if tok2 == tok {
		t.Fatal("two sessions share a CSRF token")
	}
	if w := r.do(req{method: "POST", path: "/api/v1/x", cookie: c2, header: map[string]string{CSRFHeader: tok}}); w.Code != 403 {
		t.Fatalf("session 2 with session 1's token: %d", w.Code)
	}
}

func TestBearerIsNeverWeakened(t *testing.T) {
	r := newRig(t)
	c, tok := r.login()
	// A wrong bearer next to a good session stays wrong: the API sees it as sent.
	w := r.do(req{method: "GET", path: "/api/v1/devices", cookie: c, header: map[string]string{"Authorization": "Bearer wrong"}})
	if w.Code != 401 || r.api.last() != "Bearer wrong" {
		t.Fatalf("wrong bearer + session: %d, API saw %q", w.Code, r.api.last())
	}
	// A good bearer needs no CSRF token (no cookie, not a browser session).
	w = r.do(req{method: "DELETE", path: "/api/v1/tokens/x", header: map[string]string{"Authorization": "Bearer " + admin}})
	if w.Code != 200 {
		t.Fatalf("bearer DELETE: %d", w.Code)
	}
	// No credentials at all: the API answers.
	if w := r.do(req{method: "GET", path: "/api/v1/devices"}); w.Code != 401 || r.api.last() != "" {
		t.Fatalf("anonymous: %d, API saw %q", w.Code, r.api.last())
	}
	// An unknown or forged cookie is refused before the API.
	for _, v := range []string{"forged", random256(), strings.Repeat("A", 500)} {
		w := r.do(req{method: "POST", path: "/api/v1/tokens", cookie: &http.Cookie{Name: CookieName, Value: v}, header: map[string]string{CSRFHeader: tok}})
		if w.Code != 401 {
			t.Fatalf("forged cookie %q: %d", v[:min(len(v), 10)], w.Code)
		}
	}
	// Unauthenticated routes stay open.
	if w := r.do(req{method: "GET", path: "/healthz"}); w.Code != 200 {
		t.Fatalf("healthz: %d", w.Code)
	}
}

func TestSessionExpires(t *testing.T) {
	r := newRig(t)
	c, tok := r.login()
	r.clk.advance(time.Hour - time.Second)
	if w := r.do(req{method: "GET", path: "/api/v1/devices", cookie: c}); w.Code != 200 {
		t.Fatalf("before expiry: %d", w.Code)
	}
	r.clk.advance(time.Second)
	for _, q := range []req{
		{method: "GET", path: "/api/v1/devices", cookie: c},
		{method: "POST", path: "/api/v1/tokens", cookie: c, header: map[string]string{CSRFHeader: tok}},
	} {
		w := r.do(q)
		if w.Code != 401 || !strings.Contains(w.Body.String(), "session expired") {
			t.Fatalf("%s after expiry: %d %s", q.method, w.Code, w.Body)
		}
	}
	if w := r.do(req{method: "GET", path: "/", cookie: c}); w.Code != 303 || w.Header().Get("Location") != "/login" {
		t.Fatalf("index after expiry: %d %s", w.Code, w.Header().Get("Location"))
	}
}

func TestLogout(t *testing.T) {
	r := newRig(t)
	c, tok := r.login()
	if w := r.do(req{method: "POST", path: "/logout", cookie: c}); w.Code != 403 {
		t.Fatalf("logout without CSRF: %d", w.Code)
	}
	if w := r.do(req{method: "POST", path: "/logout", cookie: c, body: "csrf=wrong", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}); w.Code != 403 {
		t.Fatalf("logout with a wrong CSRF field: %d", w.Code)
	}
	w := r.do(req{method: "POST", path: "/logout", cookie: c, body: "csrf=" + url.QueryEscape(tok), header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	if w.Code != 303 || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	if w := r.do(req{method: "GET", path: "/api/v1/devices", cookie: c}); w.Code != 401 {
		t.Fatalf("after logout: %d", w.Code)
	}
}

func TestLoginReplacesAnOldSession(t *testing.T) {
	r := newRig(t)
	c, _ := r.login()
	w := r.do(req{method: "POST", path: "/login", body: "token=" + admin, cookie: c})
	if w.Code != 303 {
		t.Fatal(w.Code)
	}
	if w := r.do(req{method: "GET", path: "/api/v1/devices", cookie: c}); w.Code != 401 {
		t.Fatalf("old session still valid after a new login: %d", w.Code)
	}
}

func TestSessionStoreBounded(t *testing.T) {
	c := newClock()
	s := newSessions(time.Hour, c.now)
	first, _ := s.create()
	for i := 0; i < maxSessions+10; i++ {
		c.advance(time.Millisecond)
		s.create()
	}
	if n := s.len(); n != maxSessions {
		t.Fatalf("%d sessions, want %d", n, maxSessions)
	}
	if _, ok := s.get(first); ok {
		t.Fatal("oldest session not evicted")
	}
	c.advance(2 * time.Hour)
	s.create()
	if n := s.len(); n != 1 {
		t.Fatalf("expired sessions not swept: %d", n)
	}
}

func TestPagesAndAssets(t *testing.T) {
	r := newRig(t)
	w := r.do(req{method: "GET", path: "/"})
	if w.Code != 303 || w.Header().Get("Location") != "/login" {
		t.Fatalf("anonymous index: %d", w.Code)
	}
	w = r.do(req{method: "GET", path: "/login"})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `<label for="token">`) {
		t.Fatalf("login page: %d", w.Code)
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if w.Header().Get("X-Frame-Options") != "DENY" {
		t.Error("no X-Frame-Options")
	}

	// Every asset a page or module names is embedded; JS is served gzipped with an ETag.
	c, _ := r.login()
	index := r.do(req{method: "GET", path: "/", cookie: c}).Body.String()
	refs := regexp.MustCompile(`(?:href|src)="(/assets/[^"]+)"`).FindAllStringSubmatch(index+w.Body.String(), -1)
	_ = fs.WalkDir(assetFS, "assets/js", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, _ := assetFS.ReadFile(p)
		for _, m := range regexp.MustCompile(`(?:from |import\()'\./([^']+)'`).FindAllStringSubmatch(string(b), -1) {
			refs = append(refs, []string{"", "/assets/js/" + m[1]})
		}
		for _, m := range regexp.MustCompile(`'(/assets/[^']+)'`).FindAllStringSubmatch(string(b), -1) {
			refs = append(refs, []string{"", m[1]})
		}
		return nil
	})
	if len(refs) < 10 {
		t.Fatalf("found only %d asset references", len(refs))
	}
	for _, m := range refs {
		w := r.do(req{method: "GET", path: m[1], header: map[string]string{"Accept-Encoding": "gzip, br"}})
		if w.Code != 200 {
			t.Errorf("%s: %d", m[1], w.Code)
			continue
		}
		if strings.HasSuffix(m[1], ".js") {
			if w.Header().Get("Content-Encoding") != "gzip" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/javascript") {
				t.Errorf("%s: encoding %q type %q", m[1], w.Header().Get("Content-Encoding"), w.Header().Get("Content-Type"))
			}
			zr, err := gzip.NewReader(bytes.NewReader(w.Body.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(zr); len(b) == 0 {
				t.Errorf("%s: empty", m[1])
			}
		}
		etag := w.Header().Get("ETag")
		if w2 := r.do(req{method: "GET", path: m[1], header: map[string]string{"If-None-Match": etag}}); w2.Code != 304 {
			t.Errorf("%s: revalidation %d", m[1], w2.Code)
		}
	}
	if w := r.do(req{method: "GET", path: "/assets/js/app.js", header: map[string]string{"Accept-Encoding": "gzip;q=0"}}); w.Header().Get("Content-Encoding") != "" {
		t.Error("gzip sent although refused")
	}
	if w := r.do(req{method: "GET", path: "/assets/../web.go"}); w.Code == 200 {
		t.Error("path traversal served a file")
	}
	if w := r.do(req{method: "GET", path: "/assets/nope.js"}); w.Code != 404 {
		t.Errorf("missing asset: %d", w.Code)
	}
	// The vendored chart library ships with its licence.
	if _, err := assetFS.ReadFile("assets/vendor/uplot/LICENSE"); err != nil {
		t.Error(err)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{"": false, "gzip": true, "br, gzip": true, "gzip;q=0": false, "gzip; q=0.0": false,
		"gzip;q=0.5": true, "deflate": false, "x-gzip": false} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Accept-Encoding", h)
		if got := acceptsGzip(r); got != want {
			t.Errorf("%q: %v, want %v", h, got, want)
		}
	}
}

func TestSessionJSONIsGzipped(t *testing.T) {
	r := newRig(t)
	c, _ := r.login()
	gz := map[string]string{"Accept-Encoding": "gzip"}
	w := r.do(req{method: "GET", path: "/api/v1/devices", cookie: c, header: gz})
	if w.Code != 200 || w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("session JSON: %d, encoding %q", w.Code, w.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Detail string }
	if err := json.NewDecoder(zr).Decode(&body); err != nil || body.Detail != "GET /api/v1/devices" {
		t.Fatalf("decoded %+v, %v", body, err)
	}
	for _, tc := range []struct {
		name string
		q    req
	}{
		{"event stream", req{method: "GET", path: "/api/v1/events", cookie: c, header: gz}},
		{"not accepted", req{method: "GET", path: "/api/v1/devices", cookie: c}},
		{"bearer client", req{method: "GET", path: "/api/v1/devices", header: map[string]string{"Accept-Encoding": "gzip", "Authorization": "Bearer " + admin}}},
		{"error", req{method: "GET", path: "/api/v1/devices", cookie: &http.Cookie{Name: CookieName, Value: "x"}, header: gz}},
	} {
		if w := r.do(tc.q); w.Header().Get("Content-Encoding") != "" {
			t.Errorf("%s: gzipped", tc.name)
		}
	}
	if w := r.do(req{method: "GET", path: "/api/v1/events", cookie: c, header: gz}); !strings.Contains(w.Body.String(), ": hello") || !w.Flushed {
		t.Errorf("event stream through the session path: %q flushed=%v", w.Body, w.Flushed)
	}
}

func TestStreamsEndWithTheSession(t *testing.T) {
	f := &fakeAPI{}
	c := newClock()
	o := c.opts(f)
	o.SessionTTL = 300 * time.Millisecond // the stream's deadline runs on the real clock
	h := New(o).Handler()
	srv := httptest.NewServer(h)
	defer srv.Close()
	login := func() *http.Cookie {
		w := httptest.NewRecorder()
		rq := httptest.NewRequest("POST", "/login", strings.NewReader("token="+admin))
		rq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h.ServeHTTP(w, rq)
		return w.Result().Cookies()[0]
	}
	stream := func(ck *http.Cookie) chan error {
		done := make(chan error, 1)
		rq, _ := http.NewRequest("GET", srv.URL+"/api/v1/stream", nil)
		rq.AddCookie(ck)
		resp, err := srv.Client().Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, err := io.Copy(io.Discard, resp.Body); resp.Body.Close(); done <- err }()
		return done
	}
	// Expiry ends it.
	start := time.Now()
	select {
	case <-stream(login()):
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("stream ended after %v, before the session expired", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream outlived its session")
	}
	// Logout ends it at once.
	o.SessionTTL = time.Hour
	h = New(o).Handler()
	srv.Config.Handler = h
	ck := login()
	done := stream(ck)
	page := httptest.NewRecorder()
	rq := httptest.NewRequest("GET", "/", nil)
	rq.AddCookie(ck)
	h.ServeHTTP(page, rq)
	tok := regexp.MustCompile(`name="csrf-token" content="([^"]+)"`).FindStringSubmatch(page.Body.String())[1]
	out := httptest.NewRecorder()
	rq = httptest.NewRequest("POST", "/logout", strings.NewReader("csrf="+url.QueryEscape(tok)))
	rq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rq.AddCookie(ck)
	h.ServeHTTP(out, rq)
	if out.Code != 303 {
		t.Fatalf("logout: %d", out.Code)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream outlived the logout")
	}
}

// TestAssetBudget keeps the pages small: what a browser fetches for the
// fleet page, and everything embedded, gzipped as served.
func TestAssetBudget(t *testing.T) {
	fleet := map[string]bool{"app.css": true, "icon.svg": true, "js/app.js": true, "js/util.js": true, "js/fleet.js": true}
	var fleetGz, allGz, allRaw int
	for _, s := range AssetSizes() {
		allGz += s.Gz
		allRaw += s.Raw
		if fleet[s.Path] {
			fleetGz += s.Gz
		}
	}
	t.Logf("fleet page %d B gzipped; all assets %d B (%d B gzipped)", fleetGz, allRaw, allGz)
	if fleetGz > 16<<10 || allGz > 64<<10 {
		t.Fatalf("assets grew past the budget: fleet page %d B gzipped (≤ 16 KiB), all %d B gzipped (≤ 64 KiB)", fleetGz, allGz)
	}
}
