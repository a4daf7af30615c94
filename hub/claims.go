package hub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// CreateClaim implements api.Claims: sign a claim token and record it.
func (h *Hub) CreateClaim(ctx context.Context, q api.ClaimRequest) (api.ClaimResponse, error) {
	ttl, uses, err := q.Resolve(h.cfg.Claims.MaxTTL)
	if err != nil {
		return api.ClaimResponse{}, err
	}
	raw, cc, err := token.IssueClaim(h.ring, ttl, time.Now())
	if err != nil {
		return api.ClaimResponse{}, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	c := store.Claim{ID: cc.ID, Labels: q.Labels, CreatedMS: cc.IssuedAt.UnixMilli(), ExpiresMS: cc.ExpiresAt.UnixMilli(), Uses: uses, Devices: []store.ClaimDevice{}}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if err := h.store.InsertClaim(ctx, c); err != nil {
		return api.ClaimResponse{}, err
	}
	h.log.Info("claim created", "claim", c.ID, "expires", cc.ExpiresAt.Time, "uses", uses, "labels", c.Labels)
	return api.ClaimResponse{Token: raw, Claim: c}, nil
}

// RevokeClaim implements api.Claims: refuse the claim from now on and cut
// its live claim sessions. Devices it registered keep their channel tokens.
func (h *Hub) RevokeClaim(ctx context.Context, id string) (store.Claim, int, error) {
	c, err := h.store.RevokeClaim(ctx, id, time.Now().UnixMilli())
	if err != nil {
		return c, 0, err
	}
	n := h.broker.Revoke(id)
	h.log.Info("claim revoked", "claim", id, "connections_cut", n)
	return c, n, nil
}

// claimRefusals maps why a claim cannot be used to a CONNECT refusal (0x87).
var claimRefusals = []struct {
	err    error
	reason string
}{
	{store.ErrClaimUnknown, "claim_unknown"},
	{store.ErrClaimExpired, "expired"},
	{store.ErrClaimRevoked, "revoked"},
	{store.ErrClaimUsed, "claim_used"},
}

// AdmitClaim implements broker.Claimer: a valid claim token that clientID
// may use (bound to it, or with a use left) opens a claim session granted
// only the client's claim topics, until the claim expires.
func (h *Hub) AdmitClaim(ctx context.Context, raw, clientID string) (*token.Claims, error) {
	v := &token.Verifier{Keys: h.ring} // revocation of claims is the store's
	cc, err := v.VerifyClaim(raw)
	if err != nil {
		return nil, err
	}
	if err := h.store.CheckClaim(ctx, cc.ID, clientID, time.Now().UnixMilli()); err != nil {
		reason := "claim_check_failed"
		for _, r := range claimRefusals {
			if errors.Is(err, r.err) {
				reason = r.reason
			}
		}
		return nil, &token.Error{Kind: token.ErrNotAuthorized, Reason: reason, Err: fmt.Errorf("claim %s for %s: %w", cc.ID, clientID, err)}
	}
	pub, sub := protocol.ClaimGrants(clientID)
	c := &token.Claims{RegisteredClaims: cc.RegisteredClaims, ACL: token.ACL{Pub: pub, Sub: sub}}
	c.Subject = clientID
	return c, nil
}

// Announce implements broker.Claimer: bind the claim to the announcing
// device id (first use) and answer with its state; an accepted device gets
// a fresh channel token (profile gateway) at every announcement, so one that
// lost the answer gets another while the claim lasts.
func (h *Hub) Announce(ctx context.Context, claimID, remote string, req protocol.ClaimRequest) protocol.ClaimResponse {
	resp := protocol.ClaimResponse{V: protocol.Version, Device: req.Device}
	cd, err := h.store.BindClaim(ctx, claimID, store.ClaimDevice{Device: req.Device, Firmware: req.Firmware, Board: req.Board,
		Arch: req.Arch, Remote: remote}, time.Now().UnixMilli(), h.cfg.Claims.AutoAccept)
	log := h.log.With("claim", claimID, "device", req.Device, "remote", remote)
	switch {
	case err != nil && isClaimRefusal(err):
		log.Warn("claim refused", "err", err)
		resp.Status, resp.Reason = protocol.ClaimRejected, err.Error()
		return resp
	case err != nil:
		log.Error("claim: store failed; the device will ask again", "err", err)
		resp.Status, resp.Reason, resp.Retry = protocol.ClaimPending, "the hub could not record the claim; try again", h.retryS()
		return resp
	}
	switch cd.State {
	case store.ClaimPending:
		log.Info("claim pending: accept with outpostctl devices accept " + req.Device)
		resp.Status, resp.Reason, resp.Retry = protocol.ClaimPending, "waiting for an operator to accept the device", h.retryS()
	case store.ClaimRejected:
		log.Info("claim of a rejected device refused")
		resp.Status, resp.Reason = protocol.ClaimRejected, "the device was rejected by an operator"
	default:
		pub, sub := protocol.GatewayGrants(req.Device)
		raw, c, err := h.Issue(ctx, token.Request{Device: req.Device, Pub: pub, Sub: sub, TTL: h.cfg.Tokens.DefaultTTL})
		if err != nil {
			log.Error("claim: token not issued; the device will ask again", "err", err)
			resp.Status, resp.Reason, resp.Retry = protocol.ClaimPending, "the hub could not issue a token; try again", h.retryS()
			return resp
		}
		log.Info("claim accepted: channel token issued", "jti", c.ID, "expires", c.ExpiresAt.Time)
		resp.Status, resp.Token, resp.Expires = protocol.ClaimAccepted, raw, c.ExpiresAt.Unix()
	}
	return resp
}

func isClaimRefusal(err error) bool {
	for _, r := range claimRefusals {
		if errors.Is(err, r.err) {
			return true
		}
	}
	return false
}

func (h *Hub) retryS() int { return int(h.cfg.Claims.Retry / time.Second) }
