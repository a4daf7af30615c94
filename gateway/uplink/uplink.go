// Package uplink carries the gateway's outbox to the hub over MQTT v5 with
// TLS (autopaho): outbound only, the channel token as password, a retained
// birth message and last-will, heartbeats, token refresh before expiry, and
// after an outage: active alerts first, then each sensor's latest value,
// then the backlog at a capped rate while new records stay current.
//
// A record leaves the outbox only after the hub's PUBACK, which the hub sends
// only once the record is committed (docs/protocol.md).
package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// Outbox is what the uplink reads and acknowledges (gateway/outbox
// implements it). Peek returns unacknowledged records whether committed or
// still buffered: a record acknowledged before its group commit never
// touches the SD card.
type Outbox interface {
	Peek(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error)
	PendingAlerts(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error)
	LatestPerSensor(ctx context.Context) ([]protocol.Record, error)
	Ack(ctx context.Context, seqs ...uint64) error
	Appended() (uint64, <-chan struct{})
}

// Tokens holds the device's channel token and stores refreshed ones.
type Tokens interface {
	Token() string
	Store(raw string) error
}

// Config configures the uplink.
type Config struct {
	Broker      string // host:port of the hub's TLS MQTT listener
	TLS         *tls.Config
	DeviceID    string
	KeepAlive   uint16        // seconds; default 30
	Heartbeat   time.Duration // default 15 s
	BatchSize   int           // records per PUBLISH; default 100
	BacklogRate int           // backlog records per second after an outage; default 2000, < 0 unlimited
	Firmware    string
	Boot        string
	// HeartbeatInfo fills the heartbeat (outbox depth, sensors, CPU temperature).
	HeartbeatInfo func() protocol.Heartbeat
	// OnMessage receives every message from the hub other than token responses.
	OnMessage func(topic string, payload []byte, retained bool)
	// RefreshAfter is the fraction of a token's lifetime after which a fresh
	// one is requested; default 2/3.
	RefreshAfter float64
	Logger       *slog.Logger
	Now          func() time.Time
	// ConnectRetry is the first reconnect delay; it doubles up to 60 s, with jitter.
	ConnectRetry time.Duration
	// Transform, if set, adjusts each record just before it is published
	// (the gateway gives boot-relative records their wall time).
	Transform func(*protocol.Record)
}

// Stats are the uplink's counters.
type Stats struct {
	Connected   bool
	Published   uint64 // records acknowledged by the hub
	Rejected    uint64 // records the hub refused as malformed (dropped, logged)
	Connects    uint64
	ConnErrors  uint64
	LastConnErr string
}

// Uplink is one device's connection to the hub.
type Uplink struct {
	cfg Config
	ob  Outbox
	tok Tokens
	log *slog.Logger

	published, rejected, connects, connErrors atomic.Uint64
	connected                                 atomic.Bool
	lastErr                                   atomic.Value // string

	upCh    chan struct{} // a connection came up
	cm      atomic.Pointer[autopaho.ConnectionManager]
	cmReady chan struct{} // closed once Run set cm (or failed to)
	cmOnce  sync.Once
	epoch   atomic.Uint64
	tokMu   sync.Mutex
	tokReq  string // correlation id of the refresh in flight
}

// New returns an uplink; Run connects.
func New(cfg Config, ob Outbox, tok Tokens) (*Uplink, error) {
	if cfg.Broker == "" || cfg.DeviceID == "" || tok == nil || ob == nil {
		return nil, errors.New("uplink: Broker, DeviceID, Outbox and Tokens are required")
	}
	if err := protocol.ValidateDeviceID(cfg.DeviceID); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 30
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.BatchSize <= 0 || cfg.BatchSize > protocol.MaxBatch {
		cfg.BatchSize = 100
	}
	if cfg.BacklogRate == 0 {
		cfg.BacklogRate = 2000
	}
	if cfg.RefreshAfter <= 0 || cfg.RefreshAfter >= 1 {
		cfg.RefreshAfter = 2.0 / 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ConnectRetry <= 0 {
		cfg.ConnectRetry = time.Second
	}
	u := &Uplink{cfg: cfg, ob: ob, tok: tok, log: cfg.Logger, upCh: make(chan struct{}, 1), cmReady: make(chan struct{})}
	u.epoch.Store(uint64(cfg.Now().UnixMilli()))
	return u, nil
}

// Stats returns a snapshot of the counters.
func (u *Uplink) Stats() Stats {
	s := Stats{Connected: u.connected.Load(), Published: u.published.Load(), Rejected: u.rejected.Load(),
		Connects: u.connects.Load(), ConnErrors: u.connErrors.Load()}
	if v, ok := u.lastErr.Load().(string); ok {
		s.LastConnErr = v
	}
	return s
}

func (u *Uplink) topic(suffix string) string { return protocol.DeviceTopic(u.cfg.DeviceID, suffix) }

func (u *Uplink) status(state string) []byte {
	b, _ := json.Marshal(protocol.Status{V: protocol.Version, State: state, Epoch: u.epoch.Load(), Firmware: u.cfg.Firmware,
		HeartbeatS: int(u.cfg.Heartbeat / time.Second), Boot: u.cfg.Boot, Time: u.cfg.Now().UnixMilli()})
	return b
}

// Run keeps the connection and the publisher going until ctx ends, then
// disconnects cleanly (the hub records a clean disconnect).
func (u *Uplink) Run(ctx context.Context) error {
	defer u.cmOnce.Do(func() { close(u.cmReady) }) // PublishStatus stops waiting
	srv, err := url.Parse("tls://" + u.cfg.Broker)
	if err != nil {
		return fmt.Errorf("uplink: broker %q: %w", u.cfg.Broker, err)
	}
	tlsCfg := u.cfg.TLS
	if tlsCfg == nil {
		return errors.New("uplink: TLS config required (the hub's CA)")
	}
	retry := u.cfg.ConnectRetry
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{srv},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     u.cfg.KeepAlive,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         0,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              backoff(retry, 60*time.Second),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			// Every attempt carries the current (possibly refreshed) token and a new epoch.
			e := u.epoch.Add(1)
			cp.Username, cp.UsernameFlag = u.cfg.DeviceID, true
			cp.Password, cp.PasswordFlag = []byte(u.tok.Token()), true
			will, _ := json.Marshal(protocol.Status{V: protocol.Version, State: "offline", Epoch: e, Firmware: u.cfg.Firmware, Boot: u.cfg.Boot})
			cp.WillMessage = &paho.WillMessage{Topic: u.topic(protocol.SufStatus), QoS: 1, Retain: true, Payload: will}
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			u.connected.Store(true)
			u.connects.Add(1)
			u.log.Info("uplink: connected", "hub", u.cfg.Broker)
			select {
			case u.upCh <- struct{}{}:
			default:
			}
		},
		OnConnectionDown: func() bool {
			u.connected.Store(false)
			u.log.Warn("uplink: connection lost; reconnecting")
			return true
		},
		OnConnectError: func(err error) {
			u.connErrors.Add(1)
			u.lastErr.Store(err.Error())
			var ce *autopaho.ConnackError
			if errors.As(err, &ce) {
				u.log.Error("uplink: hub refused the connection", "reason_code", fmt.Sprintf("0x%02x", ce.ReasonCode), "reason", ce.Reason,
					"hint", "check the device token (expired, revoked, or issued for another device id)")
				return
			}
			u.log.Warn("uplink: connect failed", "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: u.cfg.DeviceID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				u.received(pr.Packet)
				return true, nil
			}},
			OnClientError: func(err error) { u.log.Warn("uplink: client error", "err", err) },
			OnServerDisconnect: func(d *paho.Disconnect) {
				u.log.Warn("uplink: hub disconnected us", "reason_code", fmt.Sprintf("0x%02x", d.ReasonCode))
			},
		},
	}
	// The connection outlives ctx: after the publisher stops, the clean
	// goodbye (offline status, DISCONNECT) still needs it. Disconnect below
	// ends it on every path.
	cm, err := autopaho.NewConnection(context.WithoutCancel(ctx), cc)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	u.cm.Store(cm)
	u.cmOnce.Do(func() { close(u.cmReady) })
	defer u.cm.Store(nil)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); u.publisher(ctx, cm) }()
	go func() { defer wg.Done(); u.heartbeats(ctx, cm) }()
	wg.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if u.connected.Load() {
		// A clean goodbye: the hub drops the will and records a clean disconnect.
		_, _ = cm.Publish(dctx, &paho.Publish{Topic: u.topic(protocol.SufStatus), QoS: 1, Retain: true, Payload: u.status("offline")})
	}
	_ = cm.Disconnect(dctx) // cancels the connection's context: autopaho sends DISCONNECT
	<-cm.Done()
	return nil
}

func backoff(first, limit time.Duration) func(int) time.Duration {
	return func(attempt int) time.Duration {
		d := first
		for i := 0; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		// ±20 % jitter so a fleet does not reconnect in lockstep after a hub restart.
		j := time.Duration(time.Now().UnixNano()%int64(d/5+1)) - d/10
		return d + j
	}
}

// received handles a message from the hub; it runs in paho's goroutine and stays short.
func (u *Uplink) received(p *paho.Publish) {
	if p.Topic == u.topic(protocol.SufInToken) {
		u.tokenResponse(p)
		return
	}
	if u.cfg.OnMessage != nil {
		u.cfg.OnMessage(p.Topic, p.Payload, p.Retain)
	}
}

func (u *Uplink) heartbeats(ctx context.Context, cm *autopaho.ConnectionManager) {
	t := time.NewTicker(u.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !u.connected.Load() {
			continue
		}
		hb := protocol.Heartbeat{}
		if u.cfg.HeartbeatInfo != nil {
			hb = u.cfg.HeartbeatInfo()
		}
		hb.V, hb.Firmware = protocol.Version, u.cfg.Firmware
		if hb.Time == 0 {
			hb.Time = u.cfg.Now().UnixMilli()
		}
		b, _ := json.Marshal(hb)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := cm.Publish(pctx, &paho.Publish{Topic: u.topic(protocol.SufHeartbeat), QoS: 0, Payload: b}); err != nil {
			u.log.Debug("uplink: heartbeat not sent", "err", err)
		}
		cancel()
		u.maybeRefresh(ctx, cm)
	}
}
