// Package api is the hub's HTTP admin API: devices, presence, logs and
// readings, tokens, server-sent events and Prometheus metrics. Every route but
// /healthz takes the admin token as a bearer; every error is JSON.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/metrics"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Tokens is what the API needs to issue and revoke tokens.
type Tokens interface {
	Issue(ctx context.Context, r token.Request) (raw string, c *token.Claims, err error)
	Revoke(ctx context.Context, jti string) (store.Token, int, error)
	Rotate() (string, error)
	Retire(kid string) error
	Keys() []token.KeyInfo
	DefaultTTL() time.Duration
}

// Server is the API's dependencies.
type Server struct {
	Store      *store.Store
	Tokens     Tokens
	Claims     Claims // nil: claim routes answer 409
	Events     *Broadcaster
	Metrics    *metrics.Registry
	AdminToken string
	MaxBody    int64
	Logger     *slog.Logger
	History    int
	Version    string
}

// Handler returns the routed, authenticated handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, 200, map[string]string{"status": "ok", "version": s.Version})
	})
	auth := func(h func(http.ResponseWriter, *http.Request) error) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.authorized(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
				WriteError(w, fmt.Errorf("%w: missing or wrong admin token (Authorization: Bearer …)", ErrUnauthorized))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, s.MaxBody)
			if err := h(w, r); err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					err = fmt.Errorf("%w: at most %d bytes", ErrTooLarge, mbe.Limit)
				}
				if Status(err) >= 500 && s.Logger != nil {
					s.Logger.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
				}
				WriteError(w, err)
			}
		})
	}
	mux.Handle("GET /api/v1/devices", auth(s.devices))
	mux.Handle("GET /api/v1/devices/{id}", auth(s.device))
	mux.Handle("PUT /api/v1/devices/{id}/labels", auth(s.setLabels))
	mux.Handle("GET /api/v1/devices/{id}/presence", auth(s.presence))
	mux.Handle("GET /api/v1/devices/{id}/log", auth(s.log))
	mux.Handle("GET /api/v1/devices/{id}/readings", auth(s.readings))
	mux.Handle("GET /api/v1/devices/{id}/sensors", auth(s.sensors))
	mux.Handle("GET /api/v1/tokens", auth(s.tokens))
	mux.Handle("POST /api/v1/tokens", auth(s.issue))
	mux.Handle("DELETE /api/v1/tokens/{jti}", auth(s.revoke))
	mux.Handle("GET /api/v1/keys", auth(s.keys))
	mux.Handle("POST /api/v1/keys", auth(s.rotate))
	mux.Handle("DELETE /api/v1/keys/{kid}", auth(s.retire))
	mux.Handle("GET /api/v1/events", auth(s.events))
	s.MountAlerts(mux, auth)
	s.MountClaims(mux, auth)
	mux.Handle("GET /metrics", auth(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.Metrics.Write(w)
		return nil
	}))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusNotFound, errorBody{Error: "Not Found", Detail: r.Method + " " + r.URL.Path + " is not an API route"})
	})
	return mux
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || s.AdminToken == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.AdminToken)) == 1
}

func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := protocol.ValidateDeviceID(id); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return id, nil
}

func qInt(r *http.Request, key string, def, min, max int64) (int64, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%w: query %s=%q must be an integer in [%d, %d]", ErrBadRequest, key, v, min, max)
	}
	return n, nil
}

// qTime accepts unix milliseconds or RFC 3339.
func qTime(r *http.Request, key string, def time.Time) (time.Time, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return def, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.UnixMilli(n), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: query %s=%q is neither unix ms nor RFC 3339", ErrBadRequest, key, v)
	}
	return t, nil
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) error {
	st := r.URL.Query().Get("state")
	if st == "pending" {
		return s.pendingDevices(w, r) // claimed, waiting for an operator: not devices yet
	}
	ds, err := s.Store.Devices(r.Context())
	if err != nil {
		return err
	}
	if st != "" {
		out := ds[:0]
		for _, d := range ds {
			if d.State == st {
				out = append(out, d)
			}
		}
		ds = out
	}
	WriteJSON(w, 200, map[string]any{"devices": ds})
	return nil
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	d, err := s.Store.Device(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, d)
	return nil
}

func (s *Server) setLabels(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var labels map[string]string
	if err := decodeBody(r, &labels); err != nil {
		return err
	}
	if len(labels) > 64 {
		return fmt.Errorf("%w: %d labels, at most 64", ErrBadRequest, len(labels))
	}
	if err := s.Store.SetLabels(r.Context(), id, labels); err != nil {
		return err
	}
	d, err := s.Store.Device(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, d)
	return nil
}

func (s *Server) presence(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	limit, err := qInt(r, "limit", int64(max(s.History, 1)), 1, 10000)
	if err != nil {
		return err
	}
	if _, err := s.Store.Device(r.Context(), id); err != nil {
		return err
	}
	h, err := s.Store.Presence(r.Context(), id, int(limit))
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"device": id, "presence": h})
	return nil
}

func (s *Server) log(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	since, err := qInt(r, "since_seq", 0, 0, 1<<62)
	if err != nil {
		return err
	}
	limit, err := qInt(r, "limit", 1000, 1, 10000)
	if err != nil {
		return err
	}
	d, err := s.Store.Device(r.Context(), id)
	if err != nil {
		return err
	}
	recs, err := s.Store.Log(r.Context(), id, uint64(since), int(limit))
	if err != nil {
		return err
	}
	next := uint64(since)
	if len(recs) > 0 {
		var last struct {
			Seq uint64 `json:"seq"`
		}
		_ = json.Unmarshal(recs[len(recs)-1], &last)
		next = last.Seq
	}
	WriteJSON(w, 200, map[string]any{"device": id, "records": recs, "next_since_seq": next, "last_seq": d.LastSeq})
	return nil
}

func (s *Server) readings(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	sensor := r.URL.Query().Get("sensor")
	if sensor == "" || len(sensor) > protocol.MaxSensorNameLen {
		return fmt.Errorf("%w: query sensor is required (1–%d bytes)", ErrBadRequest, protocol.MaxSensorNameLen)
	}
	now := time.Now()
	to, err := qTime(r, "to", now)
	if err != nil {
		return err
	}
	from, err := qTime(r, "from", to.Add(-time.Hour))
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return fmt.Errorf("%w: from must be before to", ErrBadRequest)
	}
	points, err := qInt(r, "points", 500, 1, 10000)
	if err != nil {
		return err
	}
	ps, err := s.Store.Readings(r.Context(), id, sensor, from.UnixMilli(), to.UnixMilli(), int(points))
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"device": id, "sensor": sensor, "from": from.UnixMilli(), "to": to.UnixMilli(), "points": ps})
	return nil
}

func (s *Server) sensors(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ss, err := s.Store.Sensors(r.Context(), id)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"device": id, "sensors": ss})
	return nil
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: body: %v", ErrBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: trailing data after JSON value", ErrBadRequest)
	}
	return nil
}

// IssueRequest is the body of POST /api/v1/tokens.
type IssueRequest struct {
	Device  string   `json:"device"`
	Profile string   `json:"profile,omitempty"` // "gateway": the channels docs/protocol.md assigns to a gateway
	Pub     []string `json:"pub,omitempty"`
	Sub     []string `json:"sub,omitempty"`
	TTL     string   `json:"ttl,omitempty"`
}

// IssueResponse answers it.
type IssueResponse struct {
	Token   string    `json:"token"`
	JTI     string    `json:"jti"`
	Device  string    `json:"device"`
	Expires time.Time `json:"expires"`
	ACL     token.ACL `json:"acl"`
	KeyID   string    `json:"kid"`
}

// Resolve turns the request into a token request (profile expanded).
func (q IssueRequest) Resolve(defTTL time.Duration) (token.Request, error) {
	req := token.Request{Device: q.Device, Pub: q.Pub, Sub: q.Sub, TTL: defTTL}
	if q.TTL != "" {
		d, err := time.ParseDuration(q.TTL)
		if err != nil {
			return req, fmt.Errorf("%w: ttl %q: %v", ErrBadRequest, q.TTL, err)
		}
		req.TTL = d
	}
	switch q.Profile {
	case "":
	case "gateway":
		pub, sub := protocol.GatewayGrants(q.Device)
		req.Pub = append(pub, q.Pub...)
		req.Sub = append(sub, q.Sub...)
	default:
		return req, fmt.Errorf("%w: profile %q unknown (want gateway or none)", ErrBadRequest, q.Profile)
	}
	if err := req.Validate(); err != nil {
		return req, fmt.Errorf("%w: %v", ErrBadRequest, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return req, nil
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) error {
	var q IssueRequest
	if err := decodeBody(r, &q); err != nil {
		return err
	}
	req, err := q.Resolve(s.Tokens.DefaultTTL())
	if err != nil {
		return err
	}
	raw, c, err := s.Tokens.Issue(r.Context(), req)
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, IssueResponse{Token: raw, JTI: c.ID, Device: c.Subject, Expires: c.ExpiresAt.Time, ACL: c.ACL, KeyID: keyID(raw)})
	return nil
}

func keyID(raw string) string {
	c := &token.Claims{}
	t, _, err := newUnverifiedParser().ParseUnverified(raw, c)
	if err != nil {
		return ""
	}
	kid, _ := t.Header["kid"].(string)
	return kid
}

func (s *Server) tokens(w http.ResponseWriter, r *http.Request) error {
	dev := r.URL.Query().Get("device")
	limit, err := qInt(r, "limit", 1000, 1, 100000)
	if err != nil {
		return err
	}
	ts, err := s.Store.Tokens(r.Context(), dev, int(limit))
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"tokens": ts})
	return nil
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	jti := r.PathValue("jti")
	if jti == "" || len(jti) > 128 {
		return fmt.Errorf("%w: jti must be 1–128 characters", ErrBadRequest)
	}
	t, cut, err := s.Tokens.Revoke(r.Context(), jti)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"token": t, "connections_cut": cut})
	return nil
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request) error {
	WriteJSON(w, 200, map[string]any{"keys": s.Tokens.Keys()})
	return nil
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) error {
	kid, err := s.Tokens.Rotate()
	if err != nil {
		return err
	}
	WriteJSON(w, http.StatusCreated, map[string]any{"active": kid, "keys": s.Tokens.Keys()})
	return nil
}

func (s *Server) retire(w http.ResponseWriter, r *http.Request) error {
	if err := s.Tokens.Retire(r.PathValue("kid")); err != nil {
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	WriteJSON(w, 200, map[string]any{"keys": s.Tokens.Keys()})
	return nil
}
