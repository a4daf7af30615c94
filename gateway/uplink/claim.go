package uplink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/wait"
)

// ErrClaimRefused means the hub will not register the device with this
// claim token: announcing again with it cannot help.
var ErrClaimRefused = errors.New("claim refused")

// ClaimConfig configures Claim.
type ClaimConfig struct {
	Broker     string // host:port of the hub's TLS MQTT listener
	TLS        *tls.Config
	ClaimToken string
	Request    protocol.ClaimRequest // Device is the client id
	// Retry is the first pause between announcements while the device is
	// pending; it grows by half up to MaxRetry (defaults 10 s and 30 s). The
	// hub's retry_s is a lower bound.
	Retry, MaxRetry time.Duration
	// Wait bounds the wait for one answer before announcing again; default 10 s.
	Wait   time.Duration
	Logger *slog.Logger
}

// Claim connects with the claim token, announces the device on its claim
// topic and returns the hub's accepted answer (its channel token). It
// announces again while the device is pending or an answer is lost, and
// returns an error wrapping ErrClaimRefused when the hub refuses the claim
// token at CONNECT (expired, revoked, used by another device, unknown) or
// answers rejected.
func Claim(ctx context.Context, cfg ClaimConfig) (protocol.ClaimResponse, error) {
	id := cfg.Request.Device
	if err := protocol.ValidateDeviceID(id); err != nil {
		return protocol.ClaimResponse{}, fmt.Errorf("uplink: claim: %w", err)
	}
	if cfg.TLS == nil || cfg.ClaimToken == "" {
		return protocol.ClaimResponse{}, errors.New("uplink: claim: TLS config and claim token required")
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 10 * time.Second
	}
	if cfg.MaxRetry < cfg.Retry {
		cfg.MaxRetry = max(cfg.Retry, 30*time.Second)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := url.Parse("tls://" + cfg.Broker)
	if err != nil {
		return protocol.ClaimResponse{}, fmt.Errorf("uplink: claim: broker %q: %w", cfg.Broker, err)
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	respTopic := protocol.ClaimTopic(id, protocol.SufClaimResp)
	resps := make(chan *paho.Publish, 4)
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{srv},
		TlsCfg:                        cfg.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              backoff(time.Second, 30*time.Second),
		ConnectUsername:               id,
		ConnectPassword:               []byte(cfg.ClaimToken),
		OnConnectError: func(err error) {
			var ce *autopaho.ConnackError
			if !errors.As(err, &ce) {
				log.Warn("uplink: claim: connect failed; retrying", "hub", cfg.Broker, "err", err)
				return
			}
			why := "the claim token is expired, revoked, or already used by another device id"
			switch ce.ReasonCode {
			case 0x86:
				why = "the claim token is not valid for this hub (bad signature, unknown key, or malformed)"
			case 0x85:
				why = "the device id is not a valid client id"
			}
			stop(fmt.Errorf("%w: hub answered CONNACK 0x%02x: %s", ErrClaimRefused, ce.ReasonCode, why))
		},
		ClientConfig: paho.ClientConfig{
			ClientID: id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				if pr.Packet.Topic == respTopic {
					select {
					case resps <- pr.Packet:
					default: // a stale answer; the next announcement gets a fresh one
					}
				}
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cc)
	if err != nil {
		return protocol.ClaimResponse{}, fmt.Errorf("uplink: claim: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = cm.Disconnect(dctx)
	}()
	fail := func() (protocol.ClaimResponse, error) {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			return protocol.ClaimResponse{}, c
		}
		return protocol.ClaimResponse{}, fmt.Errorf("uplink: claim: %w", ctx.Err())
	}
	body, _ := json.Marshal(cfg.Request)
	delay := cfg.Retry
	for {
		if err := cm.AwaitConnection(ctx); err != nil {
			return fail()
		}
		// Subscribed before every announcement (the session is not kept), so
		// the answer cannot arrive before the subscription.
		sctx, cancel := context.WithTimeout(ctx, cfg.Wait)
		_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: respTopic, QoS: 1}}})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fail()
			}
			log.Warn("uplink: claim: subscribe failed; retrying", "topic", respTopic, "err", err)
			if wait.Sleep(ctx, time.Second) != nil {
				return fail()
			}
			continue
		}
		var c [8]byte
		_, _ = rand.Read(c[:])
		corr := hex.EncodeToString(c[:])
		pctx, cancel := context.WithTimeout(ctx, cfg.Wait)
		var pr *paho.PublishResponse
		pr, err = cm.Publish(pctx, &paho.Publish{Topic: protocol.ClaimTopic(id, protocol.SufClaimReq), QoS: 1, Payload: body,
			Properties: &paho.PublishProperties{ResponseTopic: respTopic, CorrelationData: []byte(corr)}})
		cancel()
		switch {
		case ctx.Err() != nil:
			return fail()
		case pr != nil && pr.ReasonCode >= 0x80:
			return protocol.ClaimResponse{}, fmt.Errorf("%w: hub refused the announcement: PUBACK 0x%02x", ErrClaimRefused, pr.ReasonCode)
		case err != nil:
			log.Warn("uplink: claim: announcement not delivered; retrying", "err", err)
			if wait.Sleep(ctx, time.Second) != nil {
				return fail()
			}
			continue
		}
		resp, ok := awaitClaim(ctx, resps, corr, cfg.Wait, log)
		if ctx.Err() != nil {
			return fail()
		}
		next := delay
		switch {
		case !ok:
			log.Warn("uplink: claim: no answer; announcing again", "waited", cfg.Wait)
		case resp.Status == protocol.ClaimAccepted:
			if resp.Device != id {
				return protocol.ClaimResponse{}, fmt.Errorf("%w: the hub answered for device %q, not %q", ErrClaimRefused, resp.Device, id)
			}
			return resp, nil
		case resp.Status == protocol.ClaimRejected:
			return protocol.ClaimResponse{}, fmt.Errorf("%w: %s", ErrClaimRefused, resp.Reason)
		default:
			next = max(next, time.Duration(resp.Retry)*time.Second)
			log.Info("uplink: claim pending: the hub waits for an operator to accept this device",
				"device", id, "hint", "outpostctl devices accept "+id, "next_announce", next)
		}
		delay = min(delay*3/2, cfg.MaxRetry)
		if wait.Sleep(ctx, next) != nil {
			return fail()
		}
	}
}

// awaitClaim waits up to d for the answer with correlation data corr.
func awaitClaim(ctx context.Context, resps <-chan *paho.Publish, corr string, d time.Duration, log *slog.Logger) (protocol.ClaimResponse, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return protocol.ClaimResponse{}, false
		case <-t.C:
			return protocol.ClaimResponse{}, false
		case p := <-resps:
			if p.Properties == nil || string(p.Properties.CorrelationData) != corr {
				continue // an answer to an earlier announcement
			}
			resp, err := protocol.DecodeClaimResponse(p.Payload)
			if err != nil {
				log.Warn("uplink: claim: bad answer ignored", "err", err)
				continue
			}
			return resp, true
		}
	}
}
