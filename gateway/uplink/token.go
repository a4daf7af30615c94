package uplink

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// TokenTimes returns a JWT's iat and exp without verifying it (the gateway
// only needs to know when to ask for a fresh one; the hub verifies).
func TokenTimes(raw string) (iat, exp time.Time, ok bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return iat, exp, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return iat, exp, false
	}
	var c struct {
		IAT int64 `json:"iat"`
		EXP int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.EXP == 0 {
		return iat, exp, false
	}
	return time.Unix(c.IAT, 0), time.Unix(c.EXP, 0), true
}

// maybeRefresh asks the hub for a fresh token once RefreshAfter of the
// current one's lifetime has passed.
func (u *Uplink) maybeRefresh(ctx context.Context, cm *autopaho.ConnectionManager) {
	iat, exp, ok := TokenTimes(u.tok.Token())
	if !ok {
		return
	}
	due := iat.Add(time.Duration(float64(exp.Sub(iat)) * u.cfg.RefreshAfter))
	if u.cfg.Now().Before(due) {
		return
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	corr := hex.EncodeToString(id[:])
	u.tokMu.Lock()
	u.tokReq = corr
	u.tokMu.Unlock()
	b, _ := json.Marshal(protocol.TokenRequest{V: protocol.Version})
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := cm.Publish(pctx, &paho.Publish{Topic: u.topic(protocol.SufTokenReq), QoS: 1, Payload: b,
		Properties: &paho.PublishProperties{ResponseTopic: u.topic(protocol.SufInToken), CorrelationData: []byte(corr)}})
	if err != nil {
		u.log.Warn("uplink: token refresh request failed", "err", err)
		return
	}
	u.log.Info("uplink: token refresh requested", "expires", exp)
}

func (u *Uplink) tokenResponse(p *paho.Publish) {
	u.tokMu.Lock()
	want := u.tokReq
	u.tokMu.Unlock()
	if p.Properties == nil || want == "" || string(p.Properties.CorrelationData) != want {
		u.log.Warn("uplink: unexpected token response ignored")
		return
	}
	resp, err := protocol.DecodeTokenResponse(p.Payload)
	if err != nil {
		u.log.Warn("uplink: bad token response", "err", err)
		return
	}
	if resp.Error != "" {
		u.log.Error("uplink: hub refused to refresh the token", "err", resp.Error)
		return
	}
	if err := u.tok.Store(resp.Token); err != nil {
		u.log.Error("uplink: could not save the fresh token", "err", err)
		return
	}
	u.tokMu.Lock()
	u.tokReq = ""
	u.tokMu.Unlock()
	u.log.Info("uplink: token refreshed", "expires", time.Unix(resp.Expires, 0))
}
