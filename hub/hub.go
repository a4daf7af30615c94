// Package hub wires the Outpost hub together: PKI, token keyring, SQLite
// store, presence tracker, embedded MQTT broker and the HTTP admin API. Run
// owns every goroutine it starts and returns when all of them have ended.
package hub

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/hub/broker"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/hub/presence"
	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/hub/web"
	"github.com/outpost-iot/outpost/internal/memtrim"
	"github.com/outpost-iot/outpost/internal/metrics"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Hub is a started hub. Tests use its addresses; main only calls Run.
type Hub struct {
	cfg        Config
	log        *slog.Logger
	store      *store.Store
	ring       *token.Keyring
	revoked    sync.Map // jti → struct{}
	tracker    *presence.Tracker
	broker     *broker.Broker
	ota        *ota.Service
	events     *api.Broadcaster
	pEvents    chan presence.Transition
	httpLn     net.Listener
	httpSrv    *http.Server
	metrics    *metrics.Registry
	trim       *memtrim.Trimmer // returns free heap to the kernel when idle (docs/decisions.md)
	adminToken string
	caFile     string
	version    string
	droppedEv  *metrics.Counter
}

// Addresses of a started hub.
type Addresses struct {
	MQTT      string // TLS
	MQTTPlain string
	HTTP      string
	HTTPURL   string
	CAFile    string
}

// New opens everything the hub needs and binds its listeners; Run serves.
func New(ctx context.Context, cfg Config, log *slog.Logger, version string) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("hub: data dir: %w", err)
	}
	h := &Hub{cfg: cfg, log: log, metrics: &metrics.Registry{}, version: version, events: api.NewBroadcaster(),
		pEvents: make(chan presence.Transition, 4096)}
	h.metrics.GoRuntime()
	h.trim = memtrim.New()
	h.metrics.CounterFunc("outpost_memory_trims_total", "Times the idle hub returned free heap memory to the kernel.",
		func() float64 { return float64(h.trim.Trims()) })
	h.droppedEv = h.metrics.Counter("outpost_presence_events_dropped_total", "Presence events not published because the queue was full.")
	ok := false
	defer func() {
		if !ok {
			h.closeAll()
		}
	}()

	tlsCfg, err := h.loadTLS()
	if err != nil {
		return nil, err
	}
	if h.ring, err = token.OpenKeyring(filepath.Join(cfg.DataDir, "keys")); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if h.adminToken, err = loadAdminToken(cfg); err != nil {
		return nil, err
	}
	storeLat := h.metrics.Histogram("outpost_store_commit_seconds", "Duration of one group commit.", metrics.ExpBuckets(0.0002, 2, 14))
	if h.store, err = store.Open(ctx, filepath.Join(cfg.DataDir, "hub.db"), store.Options{
		RetainAge: cfg.Store.RetainAge, RetainRows: cfg.Store.RetainRows, SyncFull: cfg.Store.FullSync, Logger: log,
		OnCommit: func(ops int, d time.Duration) { storeLat.Observe(d.Seconds()) },
	}); err != nil {
		return nil, err
	}
	// Scraped in this order: the first moves the intake (Counts), so both
	// are current.
	h.metrics.CounterFunc("outpost_store_records_total", "Log records newly stored.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, _, _ := h.store.Counts(ctx)
		return float64(n)
	})
	h.metrics.CounterFunc("outpost_store_duplicates_total", "Log records received again (already stored).", func() float64 {
		return float64(h.store.Duplicates.Load())
	})
	revoked, err := h.store.Revoked(ctx, time.Now().UnixMilli())
	if err != nil {
		return nil, err
	}
	for _, j := range revoked {
		h.revoked.Store(j, struct{}{})
	}
	epochs, err := h.restorePresence(ctx)
	if err != nil {
		return nil, err
	}
	h.tracker = presence.New(h, presence.Options{
		StaleAfter: cfg.Presence.StaleAfter, FlapWindow: cfg.Presence.FlapWindow, FlapCount: cfg.Presence.FlapCount,
	}, epochs)
	verifier := &token.Verifier{Keys: h.ring, Revoked: func(jti string) bool { _, ok := h.revoked.Load(jti); return ok }}
	// Bound before the broker: the OTA service's default public URL needs the port.
	if h.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
		return nil, fmt.Errorf("hub: http listen %s: %w", cfg.HTTP.Listen, err)
	}
	if h.ota, err = h.newOTA(verifier); err != nil {
		return nil, err
	}
	if h.broker, err = broker.New(broker.Options{
		TLS: tlsCfg, Listen: cfg.MQTT.Listen, PlainListen: cfg.MQTT.PlainListen, HandshakeTimeout: cfg.MQTT.HandshakeTimeout,
		Verifier: verifier, Presence: h.tracker, Log: h.store, Heartbeats: h.store, Refresher: h, Claims: h,
		Metrics: h.metrics, Logger: log, WritesPending: cfg.MQTT.QueueSlots, ConsumerWritesPending: cfg.MQTT.ConsumerSlots, Handlers: h.ota.Handlers(),
		WriteBufferSize: cfg.MQTT.BufferSize,
	}); err != nil {
		return nil, err
	}
	a := &api.Server{Store: h.store, Tokens: h, Claims: h, Events: h.events, Metrics: h.metrics, AdminToken: h.adminToken,
		MaxBody: cfg.HTTP.MaxBody, Logger: log, History: cfg.Presence.History, Version: version}
	dash := web.New(web.Options{API: withOTA(a.Handler(), h.ota), AdminToken: h.adminToken, SessionTTL: cfg.HTTP.SessionTTL, Logger: log})
	h.httpSrv = &http.Server{Handler: dash.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if !cfg.HTTP.Plain {
		h.httpSrv.TLSConfig = tlsCfg.Clone()
		h.httpLn = tls.NewListener(h.httpLn, h.httpSrv.TLSConfig)
	}
	ok = true
	return h, nil
}

func (h *Hub) loadTLS() (*tls.Config, error) {
	c := h.cfg.TLS
	if c.Cert != "" {
		cfg, err := certs.LoadServerTLS(c.Cert, c.Key, "")
		if err != nil {
			return nil, fmt.Errorf("hub: tls: %w", err)
		}
		h.caFile = c.CA
		return cfg, nil
	}
	p, created, err := certs.EnsureHubPKI(filepath.Join(h.cfg.DataDir, "pki"), c.Hosts)
	if err != nil {
		return nil, fmt.Errorf("hub: pki: %w", err)
	}
	if created {
		h.log.Info("hub: created a CA and server certificate; give clients the CA", "ca", p.CACert)
	}
	h.caFile = p.CACert
	cfg, err := certs.LoadServerTLS(p.ServerCert, p.ServerKey, "")
	if err != nil {
		return nil, fmt.Errorf("hub: tls: %w", err)
	}
	return cfg, nil
}

func loadAdminToken(cfg Config) (string, error) {
	if cfg.AdminToken != "" {
		return cfg.AdminToken, nil
	}
	path := filepath.Join(cfg.DataDir, "admin.token")
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 16 {
			return "", fmt.Errorf("hub: %s: admin token shorter than 16 characters", path)
		}
		return t, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("hub: admin token: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("hub: admin token: %w", err)
	}
	t := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("hub: admin token: %w", err)
	}
	return t, nil
}

// restorePresence loads each device's epoch and records that devices the
// previous run saw online went offline when it stopped.
func (h *Hub) restorePresence(ctx context.Context) (map[string]uint64, error) {
	ds, err := h.store.Devices(ctx)
	if err != nil {
		return nil, err
	}
	epochs := map[string]uint64{}
	now := time.Now().UnixMilli()
	for _, d := range ds {
		epochs[d.Name] = d.Epoch
		if d.State != presence.Offline {
			tr := store.Transition{Device: d.Name, TimeMS: now, State: presence.Offline, Reason: presence.ReasonHubRestart, Epoch: d.Epoch}
			if err := h.store.SaveTransition(ctx, tr, d.HBIntervalS, "", 0); err != nil {
				return nil, err
			}
		}
	}
	return epochs, nil
}

// Addrs returns the bound addresses.
func (h *Hub) Addrs() Addresses {
	scheme := "https"
	if h.cfg.HTTP.Plain {
		scheme = "http"
	}
	return Addresses{MQTT: h.broker.Addr(), MQTTPlain: h.broker.PlainAddr(), HTTP: h.httpLn.Addr().String(),
		HTTPURL: scheme + "://" + h.httpLn.Addr().String(), CAFile: h.caFile}
}

// AdminToken returns the admin API token.
func (h *Hub) AdminToken() string { return h.adminToken }

// trimInterval is how often the hub looks whether it went quiet with free
// heap to return (internal/memtrim).
const trimInterval = 10 * time.Second

// Run serves until ctx ends, then shuts down in order: HTTP, broker (its
// disconnects become presence transitions), events, store (drained).
func (h *Hub) Run(ctx context.Context) error {
	if err := h.broker.Start(); err != nil {
		h.closeAll()
		return err
	}
	a := h.Addrs()
	h.log.Info("hub: serving", "mqtt", a.MQTT, "mqtt_plain", a.MQTTPlain, "http", a.HTTPURL, "ca", a.CAFile, "version", h.version)
	g, gctx := errgroup.WithContext(ctx)
	tickCtx, stopTick := context.WithCancel(context.Background())
	g.Go(func() error { return h.tracker.Run(tickCtx, 500*time.Millisecond) })
	otaCtx, stopOTA := context.WithCancel(context.Background())
	g.Go(func() error { return h.ota.Run(otaCtx) })
	g.Go(func() error { h.trim.Run(tickCtx, trimInterval); return nil })
	evDone := make(chan struct{})
	go func() { defer close(evDone); h.publishEvents() }()
	g.Go(func() error {
		if err := h.httpSrv.Serve(h.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("hub: http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.events.Close() // ends SSE streams so Shutdown does not wait for them
		_ = h.httpSrv.Shutdown(sctx)
		stopOTA() // before the broker closes: it publishes notices
		err := h.broker.Close()
		stopTick()
		return err
	})
	err := g.Wait()
	close(h.pEvents)
	<-evDone
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := h.store.Close(cctx); cerr != nil && err == nil {
		err = cerr
	}
	h.log.Info("hub: stopped")
	return err
}

func (h *Hub) closeAll() {
	if h.broker != nil {
		_ = h.broker.Close()
	}
	if h.httpLn != nil {
		_ = h.httpLn.Close()
	}
	if h.store != nil {
		_ = h.store.Close(context.Background())
	}
}

// Transition implements presence.Sink: store every transition, publish the
// notable ones (SSE and the MQTT fleet topic) from another goroutine, since
// the tracker calls this with its lock held.
func (h *Hub) Transition(t presence.Transition) {
	var exp int64
	if !t.TokenExp.IsZero() {
		exp = t.TokenExp.UnixMilli()
	}
	st := store.Transition{Device: t.Device, TimeMS: t.Time.UnixMilli(), State: t.State, Reason: t.Reason, Epoch: t.Epoch, Remote: t.Remote}
	if err := h.store.SaveTransition(context.Background(), st, t.HeartbeatS, t.Firmware, exp); err != nil {
		h.log.Error("hub: presence not stored", "device", t.Device, "err", err)
	}
	h.log.Info("presence", "device", t.Device, "state", t.State, "reason", t.Reason, "epoch", t.Epoch, "flapping", t.Flapping)
	if !t.Notify {
		return
	}
	select {
	case h.pEvents <- t:
	default:
		h.droppedEv.Inc()
	}
}

func (h *Hub) publishEvents() {
	for t := range h.pEvents {
		ev := protocol.PresenceEvent{V: protocol.Version, Device: t.Device, State: t.State, Reason: t.Reason,
			Time: t.Time.UnixMilli(), Epoch: t.Epoch, Flapping: t.Flapping}
		h.events.Publish(api.Event{Type: "presence", Data: ev})
		if b, err := jsonMarshal(ev); err == nil {
			_ = h.broker.Publish(protocol.TopicFleetPresence, b, false, 0)
		}
	}
}

// Issue implements api.Tokens.
func (h *Hub) Issue(ctx context.Context, r token.Request) (string, *token.Claims, error) {
	if r.TTL > h.cfg.Tokens.MaxTTL {
		return "", nil, fmt.Errorf("%w: ttl %v exceeds tokens.max_ttl %v", api.ErrBadRequest, r.TTL, h.cfg.Tokens.MaxTTL)
	}
	raw, c, err := token.Issue(h.ring, r, time.Now())
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	acl, _ := jsonMarshal(c.ACL)
	if err := h.store.InsertToken(ctx, store.Token{JTI: c.ID, Device: c.Subject, ACL: acl,
		IssuedMS: c.IssuedAt.UnixMilli(), ExpiresMS: c.ExpiresAt.UnixMilli()}); err != nil {
		return "", nil, err
	}
	return raw, c, nil
}

// Revoke implements api.Tokens: persist, refuse from now on, cut live connections.
func (h *Hub) Revoke(ctx context.Context, jti string) (store.Token, int, error) {
	t, err := h.store.RevokeToken(ctx, jti, time.Now().UnixMilli())
	if err != nil {
		return t, 0, err
	}
	h.revoked.Store(jti, struct{}{})
	n := h.broker.Revoke(jti)
	h.log.Info("token revoked", "jti", jti, "device", t.Device, "connections_cut", n)
	return t, n, nil
}

// Refresh implements broker.TokenRefresher: same channels, fresh lifetime.
func (h *Hub) Refresh(ctx context.Context, c *token.Claims, req protocol.TokenRequest) (string, *token.Claims, error) {
	ttl := h.cfg.Tokens.RefreshTTL
	if req.TTL != "" {
		if d, err := time.ParseDuration(req.TTL); err == nil && d < ttl {
			ttl = d
		}
	}
	raw, fresh, err := h.Issue(ctx, token.Request{Device: c.Subject, Pub: c.ACL.Pub, Sub: c.ACL.Sub, TTL: ttl})
	if err != nil {
		return "", nil, err
	}
	h.log.Info("token refreshed", "device", c.Subject, "old_jti", c.ID, "jti", fresh.ID)
	return raw, fresh, nil
}

// Rotate implements api.Tokens.
func (h *Hub) Rotate() (string, error) { return h.ring.Rotate() }

// Retire implements api.Tokens.
func (h *Hub) Retire(kid string) error { return h.ring.Retire(kid) }

// Keys implements api.Tokens.
func (h *Hub) Keys() []token.KeyInfo { return h.ring.List() }

// DefaultTTL implements api.Tokens.
func (h *Hub) DefaultTTL() time.Duration { return h.cfg.Tokens.DefaultTTL }

// Store exposes the store (tests, benchmarks).
func (h *Hub) Store() *store.Store { return h.store }

// newOTA builds the OTA service; the broker it publishes through is
// created after it (the broker needs its status handler).
func (h *Hub) newOTA(v *token.Verifier) (*ota.Service, error) {
	c := h.cfg.OTA
	var keys *manifest.Keyring
	if len(c.ReleaseKeys) > 0 {
		var err error
		if keys, err = manifest.LoadKeyring(c.ReleaseKeys...); err != nil {
			return nil, fmt.Errorf("hub: ota.release_keys: %w", err)
		}
	} else {
		h.log.Warn("hub: ota.release_keys is empty: firmware uploads are refused until a release key is trusted")
	}
	dir := c.ArtifactDir
	if dir == "" {
		dir = filepath.Join(h.cfg.DataDir, "artifacts")
	}
	publish := ota.PublisherFunc(func(topic string, payload []byte, retain bool, qos byte) error {
		return h.broker.Publish(topic, payload, retain, qos)
	})
	return ota.New(ota.Options{DB: h.store.DB(), Publisher: publish, Verifier: v, ReleaseKeys: keys, ArtifactDir: dir,
		PublicURL: otaPublicURL(h.cfg, h.httpLn.Addr()), AdminToken: h.adminToken, MaxDownloads: c.MaxDownloads,
		MaxArtifactSize: c.MaxArtifactSize, MaxBody: h.cfg.HTTP.MaxBody, Metrics: h.metrics, Logger: h.log})
}

// otaPublicURL is ota.public_url, or https://<http.listen host, else
// tls.hosts[0], else localhost>:<bound port>.
func otaPublicURL(cfg Config, bound net.Addr) string {
	if cfg.OTA.PublicURL != "" {
		return strings.TrimRight(cfg.OTA.PublicURL, "/")
	}
	host, _, _ := net.SplitHostPort(cfg.HTTP.Listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
		if len(cfg.TLS.Hosts) > 0 {
			host = cfg.TLS.Hosts[0]
		}
	}
	_, port, _ := net.SplitHostPort(bound.String())
	return "https://" + net.JoinHostPort(host, port)
}

// withOTA routes /api/v1/ota/ to the OTA service and the rest to the API.
func withOTA(apiHandler http.Handler, o *ota.Service) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/api/v1/ota/", o.Handler())
	mux.Handle("/", apiHandler)
	return mux
}
