package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-iot/outpost/hub/store"
)

// Claims is what the API needs to issue and revoke claim tokens.
type Claims interface {
	CreateClaim(ctx context.Context, q ClaimRequest) (ClaimResponse, error)
	RevokeClaim(ctx context.Context, id string) (store.Claim, int, error)
}

// ClaimRequest is the body of POST /api/v1/claims.
type ClaimRequest struct {
	TTL    string            `json:"ttl,omitempty"`  // default 24h
	Uses   int               `json:"uses,omitempty"` // device ids it may register; default 1
	Labels map[string]string `json:"labels,omitempty"`
}

// ClaimResponse answers it: the claim token (shown once) and its record.
type ClaimResponse struct {
	Token string      `json:"token"`
	Claim store.Claim `json:"claim"`
	KeyID string      `json:"kid"`
}

// Resolve checks the request and returns its lifetime and uses.
func (q ClaimRequest) Resolve(maxTTL time.Duration) (time.Duration, int, error) {
	ttl := 24 * time.Hour
	if q.TTL != "" {
		d, err := time.ParseDuration(q.TTL)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: ttl %q: %v", ErrBadRequest, q.TTL, err)
		}
		ttl = d
	}
	if ttl < time.Minute || ttl > maxTTL {
		return 0, 0, fmt.Errorf("%w: ttl %v must be within 1m..%v (claims.max_ttl)", ErrBadRequest, ttl, maxTTL)
	}
	uses := q.Uses
	if uses == 0 {
		uses = 1
	}
	if uses < 1 || uses > 10000 {
		return 0, 0, fmt.Errorf("%w: uses %d must be within 1..10000", ErrBadRequest, q.Uses)
	}
	if err := ValidateLabels(q.Labels); err != nil {
		return 0, 0, err
	}
	return ttl, uses, nil
}

// ValidateLabels bounds labels: at most 64, keys 1–63 bytes, values ≤ 255 bytes.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > 64 {
		return fmt.Errorf("%w: %d labels, at most 64", ErrBadRequest, len(labels))
	}
	for k, v := range labels {
		if k == "" || len(k) > 63 || len(v) > 255 {
			return fmt.Errorf("%w: label %.70q=%.40q: keys are 1–63 bytes, values at most 255", ErrBadRequest, k, v)
		}
	}
	return nil
}

// MountClaims adds the claim routes and device acceptance.
func (s *Server) MountClaims(mux *http.ServeMux, auth func(func(http.ResponseWriter, *http.Request) error) http.Handler) {
	mux.Handle("POST /api/v1/claims", auth(s.createClaim))
	mux.Handle("GET /api/v1/claims", auth(s.listClaims))
	mux.Handle("GET /api/v1/claims/{id}", auth(s.getClaim))
	mux.Handle("DELETE /api/v1/claims/{id}", auth(s.revokeClaim))
	mux.Handle("POST /api/v1/devices/{id}/accept", auth(func(w http.ResponseWriter, r *http.Request) error { return s.decide(w, r, true) }))
	mux.Handle("POST /api/v1/devices/{id}/reject", auth(func(w http.ResponseWriter, r *http.Request) error { return s.decide(w, r, false) }))
}

func (s *Server) createClaim(w http.ResponseWriter, r *http.Request) error {
	if s.Claims == nil {
		return fmt.Errorf("%w: claims are not enabled on this hub", ErrConflict)
	}
	var q ClaimRequest
	if err := decodeBody(r, &q); err != nil {
		return err
	}
	resp, err := s.Claims.CreateClaim(r.Context(), q)
	if err != nil {
		return err
	}
	resp.KeyID = keyID(resp.Token)
	WriteJSON(w, http.StatusCreated, resp)
	return nil
}

func (s *Server) listClaims(w http.ResponseWriter, r *http.Request) error {
	limit, err := qInt(r, "limit", 1000, 1, 100000)
	if err != nil {
		return err
	}
	cs, err := s.Store.Claims(r.Context(), int(limit))
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"claims": cs})
	return nil
}

func claimID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 {
		return "", fmt.Errorf("%w: claim id must be 1–128 characters", ErrBadRequest)
	}
	return id, nil
}

func (s *Server) getClaim(w http.ResponseWriter, r *http.Request) error {
	id, err := claimID(r)
	if err != nil {
		return err
	}
	c, err := s.Store.Claim(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, c)
	return nil
}

func (s *Server) revokeClaim(w http.ResponseWriter, r *http.Request) error {
	if s.Claims == nil {
		return fmt.Errorf("%w: claims are not enabled on this hub", ErrConflict)
	}
	id, err := claimID(r)
	if err != nil {
		return err
	}
	c, cut, err := s.Claims.RevokeClaim(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"claim": c, "connections_cut": cut})
	return nil
}

func (s *Server) pendingDevices(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.Store.PendingDevices(r.Context())
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"devices": ds})
	return nil
}

func (s *Server) decide(w http.ResponseWriter, r *http.Request, accept bool) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ds, err := s.Store.DecideDevice(r.Context(), id, accept, time.Now().UnixMilli())
	if err != nil {
		return err
	}
	if s.Logger != nil {
		s.Logger.Info("claim: device decided", "device", id, "accepted", accept, "claims", len(ds))
	}
	WriteJSON(w, 200, map[string]any{"device": id, "claims": ds})
	return nil
}
