package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// AuthFunc wraps an API handler with the admin-token check and the JSON
// error mapping (see Handler).
type AuthFunc func(h func(http.ResponseWriter, *http.Request) error) http.Handler

// MountAlerts registers the alert routes on mux:
//
//	GET  /api/v1/alerts?state=active|cleared|recent|all&device=&since=&acked=true|false&limit=
//	POST /api/v1/alerts/ack {"device","rule","sensor","raised","by"}
//
// "recent" is every active alert plus those raised or cleared since `since`
// (default: the last 24 hours).
func (s *Server) MountAlerts(mux *http.ServeMux, auth AuthFunc) {
	mux.Handle("GET /api/v1/alerts", auth(s.alerts))
	mux.Handle("POST /api/v1/alerts/ack", auth(s.ackAlert))
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) error {
	q := store.AlertQuery{Device: r.URL.Query().Get("device")}
	if q.Device != "" {
		if err := protocol.ValidateDeviceID(q.Device); err != nil {
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	since, err := qTime(r, "since", time.Time{})
	if err != nil {
		return err
	}
	switch st := r.URL.Query().Get("state"); st {
	case "", "all":
	case "active", "cleared":
		q.State = st
	case "recent":
		if since.IsZero() {
			since = time.Now().Add(-24 * time.Hour)
		}
	default:
		return fmt.Errorf("%w: query state=%q: want active, cleared, recent or all", ErrBadRequest, st)
	}
	if !since.IsZero() {
		q.SinceMS = since.UnixMilli()
	}
	switch v := r.URL.Query().Get("acked"); v {
	case "":
	case "true", "false":
		b := v == "true"
		q.Acked = &b
	default:
		return fmt.Errorf("%w: query acked=%q: want true or false", ErrBadRequest, v)
	}
	limit, err := qInt(r, "limit", 500, 1, 10000)
	if err != nil {
		return err
	}
	q.Limit = int(limit)
	as, total, err := s.Store.Alerts(r.Context(), q)
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"alerts": as, "total": total})
	return nil
}

// AckRequest is the body of POST /api/v1/alerts/ack.
type AckRequest struct {
	store.AlertKey
	By string `json:"by,omitempty"` // who acknowledges; default "admin"
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request) error {
	var q AckRequest
	if err := decodeBody(r, &q); err != nil {
		return err
	}
	if err := protocol.ValidateDeviceID(q.Device); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if q.Rule == "" || q.Sensor == "" || q.RaisedMS <= 0 {
		return fmt.Errorf("%w: device, rule, sensor and raised (unix ms) name the alert", ErrBadRequest)
	}
	if q.By == "" {
		q.By = "admin"
	}
	if len(q.By) > 64 {
		return fmt.Errorf("%w: by: at most 64 bytes", ErrBadRequest)
	}
	a, err := s.Store.AckAlert(r.Context(), q.AlertKey, q.By, time.Now().UnixMilli())
	if err != nil {
		return err
	}
	WriteJSON(w, 200, map[string]any{"alert": a})
	return nil
}
