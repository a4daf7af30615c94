// Package broker embeds mochi-mqtt as Outpost's MQTT v5 broker: a TLS-only
// listener (plus an optional plaintext one on loopback), token authentication
// at CONNECT, per-token ACLs on every publish, subscribe and delivery,
// presence from connections, heartbeats and wills, and a publish hook that
// acknowledges a device's log records only after the store committed them.
// Each concern is its own small hook.
package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-iot/outpost/hub/presence"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/metrics"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Verifier checks a CONNECT's token for a client id.
type Verifier interface {
	Verify(raw, clientID string) (*token.Claims, error)
}

// LogStore persists a device's log records; AppendLog returns once committed.
type LogStore interface {
	AppendLog(ctx context.Context, device string, recs []protocol.Record) error
	AppendLogAsync(ctx context.Context, device string, recs []protocol.Record) error
}

// HeartbeatStore keeps a device's last heartbeat.
type HeartbeatStore interface {
	SaveHeartbeat(ctx context.Context, device string, tMS int64, hb protocol.Heartbeat) error
}

// TokenRefresher issues a fresh token for a connected device.
type TokenRefresher interface {
	Refresh(ctx context.Context, c *token.Claims, req protocol.TokenRequest) (raw string, fresh *token.Claims, err error)
}

// Claimer admits claim sessions and answers their announcements
// (docs/protocol.md, "Claiming"); the hub implements it.
type Claimer interface {
	// AdmitClaim checks a claim token at CONNECT. The claims it returns
	// carry the claim's id and expiry and grant only the client's claim
	// topics; errors are token errors (0x86 or 0x87).
	AdmitClaim(ctx context.Context, raw, clientID string) (*token.Claims, error)
	// Announce answers a claim session's announcement.
	Announce(ctx context.Context, claimID, remote string, req protocol.ClaimRequest) protocol.ClaimResponse
}

// Options configure a Broker.
type Options struct {
	TLS              *tls.Config
	Listen           string // TLS listener address, e.g. ":8883"
	PlainListen      string // optional plaintext listener; must be a loopback address
	HandshakeTimeout time.Duration

	Verifier   Verifier
	Presence   *presence.Tracker
	Log        LogStore
	Heartbeats HeartbeatStore
	Refresher  TokenRefresher
	Claims     Claimer // nil: claim tokens are refused like any unknown token
	// Handlers receive device messages on other suffixes of the device's own
	// topics (e.g. "ota/status"), inline on the publisher's packet path: keep
	// them short. An error (wrap protocol.ErrInvalid for bad payloads) is
	// counted, logged and answered with PUBACK 0x99; the message is not forwarded.
	Handlers map[string]func(device string, payload []byte) error
	Metrics  *metrics.Registry
	Logger   *slog.Logger

	// Per-client resources (memory per idle connection).
	WritesPending int32 // outbound queue slots; default 128
	// ConsumerWritesPending is the queue of a client whose token may
	// subscribe beyond its own device's topics (a consumer of the fleet's
	// messages, which fan in); default 1024.
	ConsumerWritesPending int32
	ReadBufferSize        int // default 256: tls.Conn already buffers a whole record; this only gathers header bytes
	WriteBufferSize       int // default 2048
	MaxPacketSize         uint32
}

// session is what the broker knows about one authenticated connection.
type session struct {
	device string
	claims atomic.Pointer[token.Claims] // replaced on token refresh
	epoch  uint64
	reason string // presence reason forced by the hub (revoked, expired)
	will   bool   // its will was sent
	claim  bool   // a claim session: its claim topics only, never presence
}

// Broker is the running MQTT broker.
type Broker struct {
	opts Options
	srv  *mqtt.Server
	log  *slog.Logger
	m    brokerMetrics
	tls  *listener
	pln  *listener

	mu       sync.Mutex
	sessions map[*mqtt.Client]*session

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type brokerMetrics struct {
	connects    *metrics.Counter
	authFail    *metrics.CounterVec
	aclDenied   *metrics.CounterVec
	msgIn       *metrics.Counter
	msgOut      *metrics.Counter
	dropped     *metrics.Counter
	invalid     *metrics.CounterVec
	storeErrors *metrics.Counter
	storeLat    *metrics.Histogram
}

// New builds a broker and opens its listeners; Start serves them.
func New(opts Options) (*Broker, error) {
	if opts.Verifier == nil || opts.Presence == nil || opts.Log == nil {
		return nil, errors.New("broker: Verifier, Presence and Log are required")
	}
	opts.defaults()
	if opts.TLS == nil && opts.PlainListen == "" {
		return nil, errors.New("broker: no listener: TLS config missing")
	}
	srv := newServer(opts)
	r := opts.Metrics
	b := &Broker{
		opts:     opts,
		srv:      srv,
		log:      opts.Logger,
		sessions: map[*mqtt.Client]*session{},
		m: brokerMetrics{
			connects:    r.Counter("outpost_mqtt_connects_total", "Accepted MQTT connections."),
			authFail:    r.CounterVec("outpost_mqtt_auth_failures_total", "Refused MQTT connections by reason.", "reason"),
			aclDenied:   r.CounterVec("outpost_mqtt_acl_denied_total", "Publishes and subscriptions denied by the token ACL.", "action"),
			msgIn:       r.Counter("outpost_mqtt_messages_in_total", "PUBLISH packets accepted from clients."),
			msgOut:      r.Counter("outpost_mqtt_messages_out_total", "PUBLISH packets sent to clients."),
			dropped:     r.Counter("outpost_mqtt_messages_dropped_total", "Messages dropped for a client (queue full or ACL on delivery)."),
			invalid:     r.CounterVec("outpost_mqtt_invalid_payloads_total", "Rejected payloads by topic kind.", "kind"),
			storeErrors: r.Counter("outpost_store_errors_total", "Log batches the store failed to commit."),
			storeLat:    r.Histogram("outpost_store_commit_wait_seconds", "Time a log batch waited for its group commit.", metrics.ExpBuckets(0.0005, 2, 14)),
		},
	}
	r.GaugeFunc("outpost_mqtt_connections", "Connected MQTT clients.", "", func() map[string]float64 {
		b.mu.Lock()
		defer b.mu.Unlock()
		return map[string]float64{"": float64(len(b.sessions))}
	})
	r.GaugeFunc("outpost_presence_devices", "Devices by presence state.", "state", func() map[string]float64 {
		out := map[string]float64{}
		for k, v := range opts.Presence.Counts() {
			out[k] = float64(v)
		}
		return out
	})

	for _, h := range []mqtt.Hook{&authHook{b: b}, &presenceHook{b: b}, &logHook{b: b}, &tokenHook{b: b}, &claimHook{b: b}, &metricsHook{b: b}} {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
		}
	}
	if opts.TLS != nil {
		l, err := newListener("tls", opts.Listen, opts.TLS, opts.HandshakeTimeout)
		if err != nil {
			return nil, fmt.Errorf("broker: listen %s: %w", opts.Listen, err)
		}
		b.tls = l
		if err := srv.AddListener(l); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	if opts.PlainListen != "" {
		if err := requireLoopback(opts.PlainListen); err != nil {
			b.closeListeners()
			return nil, fmt.Errorf("broker: plaintext listener: %w", err)
		}
		l, err := newListener("plain", opts.PlainListen, nil, opts.HandshakeTimeout)
		if err != nil {
			b.closeListeners()
			return nil, fmt.Errorf("broker: listen %s: %w", opts.PlainListen, err)
		}
		b.pln = l
		if err := srv.AddListener(l); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// defaults fills in what the options leave zero.
func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = &metrics.Registry{}
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.WritesPending <= 0 {
		o.WritesPending = 128
	}
	if o.ConsumerWritesPending <= 0 {
		o.ConsumerWritesPending = 1024
	}
	if o.ReadBufferSize <= 0 {
		o.ReadBufferSize = 256
	}
	if o.WriteBufferSize <= 0 {
		o.WriteBufferSize = 2048
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = protocol.MaxPayload + 64<<10
	}
}

// newServer is the mochi server with the hub's capabilities and buffers,
// no hooks and no listeners yet.
func newServer(opts Options) *mqtt.Server {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = opts.WritesPending
	caps.MaximumPacketSize = opts.MaxPacketSize
	caps.MaximumMessageExpiryInterval = 0 // retained OTA notices must not expire after 24 h
	caps.MaximumSessionExpiryInterval = 24 * 3600
	caps.ReceiveMaximum = 256
	caps.MaximumInflight = 1024
	caps.MaximumQos = 1
	return mqtt.New(&mqtt.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  opts.ReadBufferSize,
		ClientNetWriteBufferSize: opts.WriteBufferSize,
		Logger:                   mochiLogger(opts.Logger),
		InlineClient:             true,
		SysTopicResendInterval:   3600,
	})
}

// NewCore returns the hub's broker core alone, for benchmarks: the same
// mochi server, capabilities, buffers and TLS listener as New, but every
// client allowed and nothing of the hub's (no token check, ACL, presence,
// store or metrics). The caller Serves it and Closes it.
func NewCore(listen string, tlsCfg *tls.Config, logger *slog.Logger) (*mqtt.Server, error) {
	opts := Options{Logger: logger}
	opts.defaults()
	opts.WritesPending = opts.ConsumerWritesPending // what the hub gives a subscriber to many devices
	srv := newServer(opts)
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, err
	}
	l, err := newListener("tls", listen, tlsCfg, opts.HandshakeTimeout)
	if err != nil {
		return nil, err
	}
	if err := srv.AddListener(l); err != nil {
		l.ln.Close()
		return nil, err
	}
	return srv, nil
}

func (b *Broker) closeListeners() {
	for _, l := range []*listener{b.tls, b.pln} {
		if l != nil {
			_ = l.ln.Close()
		}
	}
}

// requireLoopback refuses a listen address that is not a loopback IP or "localhost".
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address (plaintext MQTT is allowed only on 127.0.0.1 or ::1)", addr)
	}
	return nil
}

// Addr returns the TLS listener's address ("" if none).
func (b *Broker) Addr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// PlainAddr returns the plaintext listener's address ("" if none).
func (b *Broker) PlainAddr() string {
	if b.pln == nil {
		return ""
	}
	return b.pln.Address()
}

// Start serves the listeners and starts the token expiry sweep.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.sweepExpired(b.ctx)
	}()
	return nil
}

// Close disconnects every client and stops the broker.
func (b *Broker) Close() error {
	b.cancel()
	b.wg.Wait()
	return b.srv.Close()
}

// Publish sends a message from the hub itself (bypasses ACL).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// Revoke cuts every live connection whose token has the given jti and
// returns how many it cut.
func (b *Broker) Revoke(jti string) int {
	return b.cut(func(s *session) bool { return s.claims.Load().ID == jti }, presence.ReasonRevoked)
}

func (b *Broker) cut(match func(*session) bool, reason string) int {
	var victims []*mqtt.Client
	b.mu.Lock()
	for cl, s := range b.sessions {
		if match(s) {
			s.reason = reason
			victims = append(victims, cl)
		}
	}
	b.mu.Unlock()
	for _, cl := range victims {
		_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized) // the returned error is the reason code
	}
	return len(victims)
}

// sweepExpired cuts connections whose token expired (refresh comes over MQTT
// before that); it runs twice a second so a cut happens within one second.
func (b *Broker) sweepExpired(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.cut(func(s *session) bool {
				return s.claims.Load().ExpiresAt != nil && now.After(s.claims.Load().ExpiresAt.Add(token.Leeway))
			}, presence.ReasonExpired)
		}
	}
}

func (b *Broker) session(cl *mqtt.Client) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[cl]
}

// Sessions returns the number of authenticated connections.
func (b *Broker) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}

// authHook authenticates CONNECT with the channel token and enforces ACLs.
type authHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *authHook) ID() string { return "outpost-auth" }
func (h *authHook) Provides(x byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnWill}, []byte{x})
}

// OnConnect verifies the token and answers refusals with the precise v5
// reason code (mochi's own authenticate step only knows 0x86).
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	refuse := func(code packets.Code, reason string, err error) error {
		b.m.authFail.Inc(reason)
		b.log.Info("mqtt: connect refused", "client", cl.ID, "remote", cl.Net.Remote, "reason", reason, "err", err)
		_ = b.srv.SendConnack(cl, code, false, nil)
		return code
	}
	if cl.ID == "" || protocol.ValidateDeviceID(cl.ID) != nil {
		return refuse(packets.ErrClientIdentifierNotValid, "bad_client_id", protocol.ValidateDeviceID(cl.ID))
	}
	if string(pk.Connect.Username) != "" && string(pk.Connect.Username) != cl.ID {
		return refuse(packets.ErrBadUsernameOrPassword, "username_mismatch", fmt.Errorf("username %q is not the client id", pk.Connect.Username))
	}
	verify, claim := b.opts.Verifier.Verify, false
	if b.opts.Claims != nil && token.IsClaimToken(string(pk.Connect.Password)) {
		verify = func(raw, id string) (*token.Claims, error) { return b.opts.Claims.AdmitClaim(b.ctx, raw, id) }
		claim = true
	}
	c, err := verify(string(pk.Connect.Password), cl.ID)
	if err != nil {
		code := packets.ErrBadUsernameOrPassword
		if errors.Is(err, token.ErrNotAuthorized) {
			code = packets.ErrNotAuthorized
		}
		return refuse(code, token.Reason(err), err)
	}
	if cl.Properties.Will.Flag != 0 && !c.CanPublish(cl.Properties.Will.TopicName) {
		b.m.aclDenied.Inc("will")
		return refuse(packets.ErrNotAuthorized, "will_acl", fmt.Errorf("will topic %q not allowed", cl.Properties.Will.TopicName))
	}
	if consumer(c, cl.ID) {
		cl.SetQueueSlots(b.opts.ConsumerWritesPending)
	}
	b.mu.Lock()
	s := &session{device: cl.ID, claim: claim}
	s.claims.Store(c)
	b.sessions[cl] = s
	b.mu.Unlock()
	return nil
}

// consumer reports whether c may subscribe with a wildcard outside device
// id's own subtree: many devices' messages may then fan in to one client
// (a gateway's grants, its own in/# and the fleet OTA topic, do not count).
func consumer(c *token.Claims, id string) bool {
	own := protocol.DeviceTopic(id, "")
	for _, f := range c.ACL.Sub {
		if !strings.HasPrefix(f, own) && strings.ContainsAny(f, "+#") {
			return true
		}
	}
	return false
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return h.b.session(cl) != nil
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := h.b.session(cl)
	if s == nil {
		return false
	}
	var ok bool
	if write {
		ok = s.claims.Load().CanPublish(topic)
		if !ok {
			h.b.m.aclDenied.Inc("publish")
		}
	} else {
		ok = s.claims.Load().CanSubscribe(topic)
		if !ok {
			h.b.m.aclDenied.Inc("subscribe")
		}
	}
	return ok
}

// OnWill keeps a stale connection's will from overwriting the retained birth
// of the device's newer session: it is delivered, but not retained.
func (h *authHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || h.b.newerSession(cl) {
		will.Retain = false
	}
	return will, nil
}

// newerSession reports whether another connection with cl's client id has
// authenticated (it is taking over, or took over, cl's session).
func (b *Broker) newerSession(cl *mqtt.Client) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for other, s := range b.sessions {
		if other != cl && s.device == cl.ID {
			return true
		}
	}
	return false
}

// presenceHook turns connections, birth messages, heartbeats and wills into presence.
type presenceHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *presenceHook) ID() string { return "outpost-presence" }
func (h *presenceHook) Provides(x byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnWillSent, mqtt.OnPublish}, []byte{x})
}

func (h *presenceHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	s := h.b.session(cl)
	if s == nil || s.claim {
		return
	}
	h.b.m.connects.Inc()
	var exp time.Time
	if s.claims.Load().ExpiresAt != nil {
		exp = s.claims.Load().ExpiresAt.Time
	}
	epoch := h.b.opts.Presence.Connected(cl.ID, cl, cl.Net.Remote, exp)
	h.b.mu.Lock()
	s.epoch = epoch
	h.b.mu.Unlock()
}

func (h *presenceHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.b.mu.Lock()
	if s := h.b.sessions[cl]; s != nil {
		s.will = true
	}
	h.b.mu.Unlock()
}

func (h *presenceHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	b := h.b
	b.mu.Lock()
	s := b.sessions[cl]
	delete(b.sessions, cl)
	b.mu.Unlock()
	if s == nil || s.claim {
		return // never authenticated, or a claim session (not a device being online)
	}
	reason := disconnectReason(cl, s, err)
	b.opts.Presence.Disconnected(cl.ID, cl, reason)
}

func disconnectReason(cl *mqtt.Client, s *session, err error) string {
	cause := cl.StopCause()
	var ne net.Error
	switch {
	case s.reason != "":
		return s.reason
	case errors.Is(cause, packets.ErrSessionTakenOver) || cl.IsTakenOver():
		return presence.ReasonTakenOver
	case errors.Is(cause, packets.ErrServerShuttingDown) || errors.Is(err, packets.ErrServerShuttingDown):
		return presence.ReasonShutdown
	case errors.Is(cause, packets.CodeDisconnect) && !s.will:
		return presence.ReasonClean
	case errors.As(err, &ne) && ne.Timeout():
		return presence.ReasonKeepalive
	case s.will:
		return presence.ReasonWill
	default:
		return presence.ReasonLost
	}
}

func (h *presenceHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	id, suffix, ok := protocol.ParseDeviceTopic(pk.TopicName)
	if !ok || id != cl.ID {
		return pk, nil
	}
	b := h.b
	switch suffix {
	case protocol.SufStatus:
		st, err := protocol.DecodeStatus(pk.Payload)
		if err != nil {
			return pk, b.reject(cl, pk, "status", err)
		}
		if st.State == "online" {
			b.opts.Presence.Birth(cl.ID, cl, st.HeartbeatS, st.Firmware)
		}
	case protocol.SufHeartbeat:
		hb, err := protocol.DecodeHeartbeat(pk.Payload)
		if err != nil {
			return pk, b.reject(cl, pk, "heartbeat", err)
		}
		b.opts.Presence.Heartbeat(cl.ID, cl, hb.Firmware)
		if b.opts.Heartbeats != nil {
			_ = b.opts.Heartbeats.SaveHeartbeat(b.ctx, cl.ID, time.Now().UnixMilli(), hb)
		}
	default:
		if fn := b.opts.Handlers[suffix]; fn != nil {
			if err := fn(cl.ID, pk.Payload); err != nil {
				return pk, b.reject(cl, pk, suffix, err)
			}
		}
	}
	return pk, nil
}

// reject counts and logs a malformed payload and keeps it from subscribers;
// a v5 QoS 1 publisher gets PUBACK 0x99 saying why.
func (b *Broker) reject(cl *mqtt.Client, pk packets.Packet, kind string, err error) error {
	b.m.invalid.Inc(kind)
	b.log.Warn("mqtt: payload rejected", "client", cl.ID, "kind", kind, "err", err)
	if pk.FixedHeader.Qos == 0 || cl.Properties.ProtocolVersion < 5 {
		return packets.ErrRejectPacket
	}
	return packets.ErrPayloadFormatInvalid
}

// logHook stores a device's log batch and lets mochi PUBACK only after commit.
type logHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *logHook) ID() string           { return "outpost-log" }
func (h *logHook) Provides(x byte) bool { return x == mqtt.OnPublish }

func (h *logHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasSuffix(pk.TopicName, "/"+protocol.SufLog) {
		return pk, nil
	}
	id, suffix, ok := protocol.ParseDeviceTopic(pk.TopicName)
	if !ok || suffix != protocol.SufLog {
		return pk, nil
	}
	b := h.b
	if id != cl.ID {
		// A token may grant another device's log topic (a bridge); records are
		// stored under the topic's device either way.
		if err := protocol.ValidateDeviceID(id); err != nil {
			return pk, b.reject(cl, pk, "log", err)
		}
	}
	bt, err := protocol.DecodeBatch(pk.Payload)
	if err != nil {
		return pk, b.reject(cl, pk, "log", err)
	}
	if pk.FixedHeader.Qos == 0 {
		// No PUBACK to hold back: queue for the next group commit.
		if err := b.opts.Log.AppendLogAsync(b.ctx, id, bt.Records); err != nil {
			b.m.storeErrors.Inc()
			return pk, packets.ErrRejectPacket
		}
		return pk, nil
	}
	start := time.Now()
	err = b.opts.Log.AppendLog(b.ctx, id, bt.Records)
	b.m.storeLat.Observe(time.Since(start).Seconds())
	if err != nil {
		b.m.storeErrors.Inc()
		b.log.Error("mqtt: store failed; message not acknowledged", "client", cl.ID, "err", err)
		// No PUBACK: the device keeps the records in its outbox and retries.
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// tokenHook answers token refresh requests (v5 request/response).
type tokenHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *tokenHook) ID() string           { return "outpost-token" }
func (h *tokenHook) Provides(x byte) bool { return x == mqtt.OnPublish }

func (h *tokenHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || !strings.HasSuffix(pk.TopicName, "/"+protocol.SufTokenReq) {
		return pk, nil
	}
	id, suffix, ok := protocol.ParseDeviceTopic(pk.TopicName)
	if !ok || suffix != protocol.SufTokenReq || id != cl.ID {
		return pk, nil
	}
	b := h.b
	s := b.session(cl)
	if s == nil || b.opts.Refresher == nil {
		return pk, packets.ErrRejectPacket
	}
	resp := protocol.TokenResponse{V: protocol.Version}
	req, err := protocol.DecodeTokenRequest(pk.Payload)
	if err != nil {
		b.m.invalid.Inc("token_request")
		resp.Error = err.Error()
	} else if raw, fresh, err := b.opts.Refresher.Refresh(b.ctx, s.claims.Load(), req); err != nil {
		resp.Error = err.Error()
	} else {
		resp.Token, resp.Expires = raw, fresh.ExpiresAt.Unix()
		// The connection now runs on the fresh token: its expiry, its jti for revocation.
		s.claims.Store(fresh)
	}
	respTopic := pk.Properties.ResponseTopic
	if respTopic == "" || !s.claims.Load().CanSubscribe(respTopic) {
		respTopic = protocol.DeviceTopic(id, protocol.SufInToken)
	}
	b.respond(id, respTopic, mustJSON(resp), pk.Properties.CorrelationData)
	return pk, nil
}

// respond publishes a v5 response (QoS 1, never retained) once the calling
// hook has returned: a hook runs inline on the publisher's packet path, and
// the requester subscribes before asking.
func (b *Broker) respond(client, topic string, payload, corr []byte) {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		PacketID:    1, // inline publishes need one; mochi assigns the real id per subscriber
		TopicName:   topic,
		Payload:     payload,
		Properties:  packets.Properties{CorrelationData: corr},
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.srv.InjectPacket(b.srv.NewClient(nil, "local", "outpost-hub", true), out); err != nil {
			b.log.Warn("mqtt: response", "client", client, "topic", topic, "err", err)
		}
	}()
}

// claimHook answers a claim session's announcement on its own request topic
// (the ACL lets it publish nowhere else) on its own response topic.
type claimHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *claimHook) ID() string           { return "outpost-claim" }
func (h *claimHook) Provides(x byte) bool { return x == mqtt.OnPublish }

func (h *claimHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	id, suffix, ok := protocol.ParseClaimTopic(pk.TopicName)
	if !ok || suffix != protocol.SufClaimReq || id != cl.ID {
		return pk, nil
	}
	b := h.b
	s := b.session(cl)
	if s == nil || !s.claim || b.opts.Claims == nil {
		return pk, packets.ErrRejectPacket
	}
	req, err := protocol.DecodeClaimRequest(pk.Payload)
	if err == nil && req.Device != cl.ID {
		err = fmt.Errorf("%w: claim request: device %q is not the client id %q", protocol.ErrInvalid, req.Device, cl.ID)
	}
	if err != nil {
		return pk, b.reject(cl, pk, "claim", err)
	}
	resp := b.opts.Claims.Announce(b.ctx, s.claims.Load().ID, cl.Net.Remote, req)
	b.respond(id, protocol.ClaimTopic(id, protocol.SufClaimResp), mustJSON(resp), pk.Properties.CorrelationData)
	return pk, nil
}

// metricsHook counts traffic.
type metricsHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *metricsHook) ID() string { return "outpost-metrics" }
func (h *metricsHook) Provides(x byte) bool {
	return x == mqtt.OnPublished || x == mqtt.OnPacketSent || x == mqtt.OnPublishDropped
}
func (h *metricsHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline {
		h.b.m.msgIn.Inc()
	}
}
func (h *metricsHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, b []byte) {
	if pk.FixedHeader.Type == packets.Publish {
		h.b.m.msgOut.Inc()
	}
}
func (h *metricsHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) { h.b.m.dropped.Inc() }

// mochiLogger quiets mochi below debug: it logs every rejected packet at
// error level with a full dump, and our hooks already log what matters.
func mochiLogger(l *slog.Logger) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l.With("component", "mochi")
	}
	return slog.New(slog.DiscardHandler)
}
