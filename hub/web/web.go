// Package web is the hub's dashboard: a few plain HTML pages and small
// vanilla JS modules, embedded in the binary (no CDN, works air-gapped),
// that call the same /api/v1 routes as outpostctl.
//
// A browser logs in with the admin token (form POST) and gets a session
// cookie (256-bit random id, HttpOnly, SameSite=Strict, Secure over TLS,
// server-side store with an absolute expiry). For requests that carry such
// a cookie and no Authorization header, Handler checks the session (and,
// for every state-changing method, the session's synchronizer CSRF token in
// the X-CSRF-Token header or the csrf form field), then hands the request to
// the API with the admin bearer injected. Requests with an Authorization
// header go to the API untouched: bearer auth is never weakened.
package web

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed assets
var assetFS embed.FS

//go:embed templates/*.html
var templateFS embed.FS

// Names on the wire.
const (
	CookieName = "outpost_session"
	CSRFHeader = "X-CSRF-Token"
	CSRFField  = "csrf"
)

// Login throttling: failed attempts per client address and window.
const (
	loginFailures = 10
	loginWindow   = time.Minute
)

// Options are the dashboard's dependencies.
type Options struct {
	API        http.Handler // the admin API (api.Server.Handler)
	AdminToken string
	SessionTTL time.Duration // 0: DefaultSessionTTL
	Logger     *slog.Logger
	Now        func() time.Time // tests
}

// Dashboard serves the pages, the login flow and the session-authenticated
// path to the API.
type Dashboard struct {
	opts     Options
	sessions *sessions
	assets   map[string]*asset
	tmpl     *template.Template
	fails    failures
}

// New returns a dashboard in front of o.API.
func New(o Options) *Dashboard {
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{opts: o, sessions: newSessions(o.SessionTTL, o.Now),
		tmpl: template.Must(template.ParseFS(templateFS, "templates/*.html")), fails: failures{m: map[string]*failCount{}}}
	d.assets = loadAssets()
	return d
}

// Handler routes dashboard paths and sends everything else to the API.
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.index)
	mux.HandleFunc("GET /login", d.loginPage)
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.logout)
	mux.HandleFunc("GET /assets/{path...}", d.asset)
	mux.Handle("/", d.withSession(d.opts.API))
	return mux
}

// withSession lets a session cookie stand in for the admin bearer.
func (d *Dashboard) withSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("Authorization") != "" {
			next.ServeHTTP(w, r) // bearer: the API decides, unchanged
			return
		}
		c, err := r.Cookie(CookieName)
		if err != nil {
			next.ServeHTTP(w, r) // no credentials: the API answers 401
			return
		}
		ss, ok := d.sessions.get(c.Value)
		if !ok {
			writeJSON(w, http.StatusUnauthorized, "Unauthorized", "dashboard session expired or unknown: log in again")
			return
		}
		if !safeMethod(r.Method) {
			if reason := d.refuseChange(r, ss, r.Header.Get(CSRFHeader)); reason != "" {
				writeJSON(w, http.StatusForbidden, "Forbidden", reason)
				return
			}
		}
		// A long request (the event stream) ends with the session: at its
		// expiry or when it is logged out.
		ctx, cancel := context.WithTimeout(r.Context(), ss.expires.Sub(d.opts.Now()))
		defer cancel()
		defer context.AfterFunc(ss.ended, cancel)()
		r2 := r.Clone(ctx)
		r2.Header.Set("Authorization", "Bearer "+d.opts.AdminToken)
		if r.Method == http.MethodGet && acceptsGzip(r) {
			// The pages' JSON (3 MB for 10,000 devices) crosses slow links.
			gz := &gzipJSON{ResponseWriter: w}
			defer gz.close()
			w = gz
		}
		next.ServeHTTP(w, r2)
	})
}

var gzPool = sync.Pool{New: func() any { zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return zw }}

// gzipJSON compresses a 200 application/json response; anything else
// (event streams, artifacts, ranges, errors) passes through as it is.
type gzipJSON struct {
	http.ResponseWriter
	zw      *gzip.Writer
	decided bool
}

func (g *gzipJSON) WriteHeader(code int) {
	if !g.decided {
		g.decided = true
		h := g.Header()
		if code == http.StatusOK && strings.HasPrefix(h.Get("Content-Type"), "application/json") && h.Get("Content-Encoding") == "" {
			h.Set("Content-Encoding", "gzip")
			h.Del("Content-Length")
			h.Add("Vary", "Accept-Encoding")
			g.zw = gzPool.Get().(*gzip.Writer)
			g.zw.Reset(g.ResponseWriter)
		}
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gzipJSON) Write(b []byte) (int, error) {
	if !g.decided {
		g.WriteHeader(http.StatusOK)
	}
	if g.zw != nil {
		return g.zw.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

func (g *gzipJSON) Flush() {
	if g.zw != nil {
		_ = g.zw.Flush()
	}
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (g *gzipJSON) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *gzipJSON) close() {
	if g.zw != nil {
		_ = g.zw.Close()
		gzPool.Put(g.zw)
		g.zw = nil
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// refuseChange says why a state-changing, cookie-authenticated request is
// refused, or "" if it may proceed: the CSRF token must match the session's,
// and a browser's Origin / Sec-Fetch-Site must not name another site.
func (d *Dashboard) refuseChange(r *http.Request, ss session, presented string) string {
	if crossSite(r) {
		return "cross-site request refused"
	}
	if presented == "" {
		return "missing CSRF token (" + CSRFHeader + " header)"
	}
	if !ss.validCSRF(presented) {
		return "CSRF token does not match this session"
	}
	return ""
}

// crossSite reports a request a browser marked as coming from another origin.
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" || s == "same-site" {
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || o == "null" || !strings.EqualFold(u.Host, r.Host)
}

func (d *Dashboard) session(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return "", session{}, false
	}
	ss, ok := d.sessions.get(c.Value)
	return c.Value, ss, ok
}

func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // not no-referrer: with it a browser sends "Origin: null"
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

func (d *Dashboard) index(w http.ResponseWriter, r *http.Request) {
	_, ss, ok := d.session(r)
	if !ok {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	pageHeaders(w)
	_ = d.tmpl.ExecuteTemplate(w, "index.html", map[string]any{"CSRF": ss.csrf, "Expires": ss.expires.UnixMilli()})
}

type loginView struct {
	Error   string
	Notice  string
	Status  int
	Expired bool
}

func (d *Dashboard) renderLogin(w http.ResponseWriter, v loginView) {
	pageHeaders(w)
	if v.Status == 0 {
		v.Status = http.StatusOK
	}
	w.WriteHeader(v.Status)
	_ = d.tmpl.ExecuteTemplate(w, "login.html", v)
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := d.session(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	v := loginView{}
	switch r.URL.Query().Get("m") {
	case "expired":
		v.Notice = "Your session has ended. Log in again."
	case "out":
		v.Notice = "You are logged out."
	}
	d.renderLogin(w, v)
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		d.renderLogin(w, loginView{Error: "Cross-site login refused.", Status: http.StatusForbidden})
		return
	}
	ip := clientIP(r)
	if !d.fails.allow(ip, d.opts.Now()) {
		w.Header().Set("Retry-After", strconv.Itoa(int(loginWindow.Seconds())))
		d.renderLogin(w, loginView{Error: "Too many failed logins from your address; wait a minute.", Status: http.StatusTooManyRequests})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if !equalSecret(tok, d.opts.AdminToken) {
		d.fails.add(ip, d.opts.Now())
		d.opts.Logger.Warn("dashboard: failed login", "remote", ip)
		d.renderLogin(w, loginView{Error: "That is not the admin token.", Status: http.StatusUnauthorized})
		return
	}
	if old, err := r.Cookie(CookieName); err == nil {
		d.sessions.delete(old.Value) // no session fixation
	}
	id, ss := d.sessions.create()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(d.opts.SessionTTL.Seconds()), Expires: ss.expires})
	d.opts.Logger.Info("dashboard: login", "remote", ip, "sessions", d.sessions.len())
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	id, ss, ok := d.session(r)
	if ok {
		presented := r.Header.Get(CSRFHeader)
		if presented == "" {
			r.Body = http.MaxBytesReader(w, r.Body, 4096)
			presented = r.PostFormValue(CSRFField)
		}
		if reason := d.refuseChange(r, ss, presented); reason != "" {
			writeJSON(w, http.StatusForbidden, "Forbidden", reason)
			return
		}
		d.sessions.delete(id)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login?m=out", http.StatusSeeOther)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeJSON writes the API's error shape.
func writeJSON(w http.ResponseWriter, status int, msg, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "detail": detail})
}

// failures counts failed logins per client address in fixed windows.
type failures struct {
	mu sync.Mutex
	m  map[string]*failCount
}

type failCount struct {
	n     int
	since time.Time
}

func (f *failures) allow(ip string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.m[ip]
	return c == nil || now.Sub(c.since) >= loginWindow || c.n < loginFailures
}

func (f *failures) add(ip string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) > 4096 {
		for k, c := range f.m {
			if now.Sub(c.since) >= loginWindow {
				delete(f.m, k)
			}
		}
	}
	c := f.m[ip]
	if c == nil || now.Sub(c.since) >= loginWindow {
		c = &failCount{since: now}
		f.m[ip] = c
	}
	c.n++
}

// asset is one embedded file, with its gzip form when that is smaller.
type asset struct {
	body, gz []byte
	ctype    string
	etag     string
}

func loadAssets() map[string]*asset {
	out := map[string]*asset{}
	_ = fs.WalkDir(assetFS, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := assetFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		a := &asset{body: b, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, ctype: mime.TypeByExtension(path.Ext(p))}
		switch path.Ext(p) {
		case ".js":
			a.ctype = "text/javascript; charset=utf-8"
		case ".css":
			a.ctype = "text/css; charset=utf-8"
		case ".svg":
			a.ctype = "image/svg+xml"
		}
		if a.ctype == "" {
			a.ctype = "application/octet-stream"
		}
		if strings.HasPrefix(a.ctype, "text/") || a.ctype == "image/svg+xml" {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			_, _ = zw.Write(b)
			_ = zw.Close()
			if buf.Len() < len(b) {
				a.gz = buf.Bytes()
			}
		}
		out[strings.TrimPrefix(p, "assets/")] = a
		return nil
	})
	return out
}

func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request) {
	a, ok := d.assets[r.PathValue("path")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache") // revalidate: a 304 costs one round trip
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) != "gzip" {
			continue
		}
		if v, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// AssetSize is one embedded asset's size, raw and as served gzipped.
type AssetSize struct {
	Path     string
	Raw, Gz  int
	Compress bool
}

// AssetSizes lists every embedded asset (benchmarks and docs).
func AssetSizes() []AssetSize {
	var out []AssetSize
	for p, a := range loadAssets() {
		s := AssetSize{Path: p, Raw: len(a.body), Gz: len(a.body)}
		if a.gz != nil {
			s.Gz, s.Compress = len(a.gz), true
		}
		out = append(out, s)
	}
	return out
}
