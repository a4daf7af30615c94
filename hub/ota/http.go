package ota

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/api"
)

// Error kinds of this package; the table below maps them (and the
// manifest package's) to HTTP status, falling back to api.Status.
var (
	ErrNotFound      = errors.New("not found")
	ErrUnprocessable = errors.New("unprocessable")
	ErrBusy          = errors.New("too many concurrent downloads")
	ErrNoReleaseKeys = errors.New("the hub trusts no release key (configure ota.release_keys)")
)

var statusOf = []struct {
	err    error
	status int
}{
	{manifest.ErrMalformed, http.StatusBadRequest},
	{manifest.ErrInvalidVersion, http.StatusBadRequest},
	{manifest.ErrUnknownKey, http.StatusUnprocessableEntity},
	{manifest.ErrBadSignature, http.StatusUnprocessableEntity},
	{manifest.ErrSizeMismatch, http.StatusUnprocessableEntity},
	{manifest.ErrDigestMismatch, http.StatusUnprocessableEntity},
	{ErrNoReleaseKeys, http.StatusUnprocessableEntity},
	{ErrUnprocessable, http.StatusUnprocessableEntity},
	{ErrNotFound, http.StatusNotFound},
	{ErrBusy, http.StatusServiceUnavailable},
}

// Status maps an error to its HTTP status.
func Status(err error) int {
	for _, s := range statusOf {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return api.Status(err)
}

func writeError(w http.ResponseWriter, err error) {
	api.WriteErrorStatus(w, err, Status(err))
}

// Handler serves the OTA routes under /api/v1/ota/. Every route but the
// artifact download takes the admin token; downloads take the device's
// channel token.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/ota/releases", s.admin(s.listReleases, s.o.MaxBody))
	mux.Handle("POST /api/v1/ota/releases", s.admin(s.upload, s.o.MaxArtifactSize+manifest.MaxManifestSize+1<<20))
	mux.Handle("GET /api/v1/ota/rollouts", s.admin(s.listRollouts, s.o.MaxBody))
	mux.Handle("POST /api/v1/ota/rollouts", s.admin(s.createRollout, s.o.MaxBody))
	mux.Handle("GET /api/v1/ota/rollouts/{id}", s.admin(s.getRollout, s.o.MaxBody))
	mux.Handle("POST /api/v1/ota/rollouts/{id}/{action}", s.admin(s.rolloutAction, s.o.MaxBody))
	mux.HandleFunc("GET /api/v1/ota/artifacts/{sha256}", s.serveArtifact)
	mux.HandleFunc("/api/v1/ota/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteErrorStatus(w, errors.New(r.Method+" "+r.URL.Path+" is not an OTA API route"), http.StatusNotFound)
	})
	return mux
}

func (s *Service) admin(h func(http.ResponseWriter, *http.Request) error, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok || s.o.AdminToken == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.o.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			writeError(w, fmt.Errorf("%w: missing or wrong admin token (Authorization: Bearer …)", api.ErrUnauthorized))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if err := h(w, r); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				err = fmt.Errorf("%w: at most %d bytes", api.ErrTooLarge, mbe.Limit)
			}
			if Status(err) >= 500 {
				s.log.Error("ota api", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
}

func bearer(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(tok), ok && strings.TrimSpace(tok) != ""
}

// decodeBody decodes one JSON value strictly; an empty body leaves v as is
// when allowEmpty.
func decodeBody(r *http.Request, v any, allowEmpty bool) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if allowEmpty && errors.Is(err, io.EOF) {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w: body: %v", api.ErrBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: trailing data after JSON value", api.ErrBadRequest)
	}
	return nil
}

func validPublicURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("is empty")
	case err != nil:
		return err
	case u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an https://host[:port] URL (devices download only over HTTPS)", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q: no user, query or fragment allowed", s)
	}
	return nil
}

// ArtifactURL returns the URL devices download the artifact with digest
// sha256 from.
func (s *Service) ArtifactURL(sha256 string) string {
	return strings.TrimRight(s.o.PublicURL, "/") + "/api/v1/ota/artifacts/" + sha256
}
