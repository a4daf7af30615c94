package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Error kinds the handlers return; one table maps them to HTTP status.
var (
	ErrBadRequest   = errors.New("bad request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrTooLarge     = errors.New("request body too large")
	ErrConflict     = errors.New("conflict")
)

var statusOf = []struct {
	err    error
	status int
}{
	{ErrBadRequest, http.StatusBadRequest},
	{protocol.ErrInvalid, http.StatusBadRequest},
	{ErrUnauthorized, http.StatusUnauthorized},
	{ErrForbidden, http.StatusForbidden},
	{store.ErrNotFound, http.StatusNotFound},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrConflict, http.StatusConflict},
	{store.ErrClosed, http.StatusServiceUnavailable},
}

// Status maps an error to its HTTP status (500 for the unknown).
func Status(err error) int {
	for _, s := range statusOf {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

// WriteError writes err as {"error": ..., "detail": ...} with its status.
func WriteError(w http.ResponseWriter, err error) {
	WriteErrorStatus(w, err, Status(err))
}

// WriteErrorStatus writes err with status st (a package with error kinds
// of its own maps them first); a 500 does not show the error itself.
func WriteErrorStatus(w http.ResponseWriter, err error, st int) {
	body := errorBody{Error: http.StatusText(st), Detail: err.Error()}
	if st == http.StatusInternalServerError {
		body.Detail = "internal error (see the hub's log)"
	}
	WriteJSON(w, st, body)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
