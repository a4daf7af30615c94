package ota

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// serveArtifact serves GET /api/v1/ota/artifacts/{sha256} to a device that
// presents its own channel token as bearer and that an unfinished rollout of
// this artifact targets (its wave started, it has not finished). Range and
// If-Range work (http.ServeContent, ETag = the digest), so a download
// resumes where it broke off. At most MaxDownloads run at once; more get 503
// with Retry-After.
func (s *Service) serveArtifact(w http.ResponseWriter, r *http.Request) {
	result := "ok"
	defer func() { s.m.downloads.Inc(result) }()
	fail := func(res string, err error) {
		result = res
		writeError(w, err)
	}
	sha := r.PathValue("sha256")
	if !isHex64(sha) {
		fail("bad_request", fmt.Errorf("%w: %q is not a SHA-256 (64 lower-case hex digits)", api.ErrBadRequest, sha))
		return
	}
	raw, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-ota"`)
		fail("unauthorized", fmt.Errorf("%w: give the device's channel token as bearer (Authorization: Bearer …)", api.ErrUnauthorized))
		return
	}
	// The token names its device; the signature, expiry, revocation and
	// binding are then checked exactly as at MQTT CONNECT.
	var unverified jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &unverified); err != nil || protocol.ValidateDeviceID(unverified.Subject) != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-ota", error="invalid_token"`)
		fail("unauthorized", fmt.Errorf("%w: not a device channel token", api.ErrUnauthorized))
		return
	}
	device := unverified.Subject
	claims, err := s.o.Verifier.Verify(raw, device)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost-ota", error="invalid_token"`)
		fail("unauthorized", fmt.Errorf("%w: device token: %v", api.ErrUnauthorized, err))
		return
	}
	if !claims.CanSubscribe(protocol.DeviceTopic(device, protocol.SufInOTA)) {
		fail("forbidden", fmt.Errorf("%w: the token of %s does not grant its OTA notices (%s)", api.ErrForbidden, device, protocol.DeviceTopic(device, protocol.SufInOTA)))
		return
	}
	var uploaded int64
	err = s.db.QueryRowContext(r.Context(), `SELECT l.uploaded_ms FROM ota_rollout_devices d
		JOIN ota_rollouts ro ON ro.id = d.rollout JOIN ota_releases l ON l.sha256 = ro.sha256
		WHERE d.device = ? AND ro.sha256 = ? AND ro.state IN ('active','paused') AND d.wave <= ro.wave
			AND d.state NOT IN ('pending','succeeded','failed','rolled_back') LIMIT 1`, device, sha).Scan(&uploaded)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			fail("forbidden", fmt.Errorf("%w: %s is not in an unfinished rollout of artifact %s", api.ErrForbidden, device, sha))
			return
		}
		s.log.Error("ota: download check", "device", device, "err", err)
		fail("error", err)
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	default:
		w.Header().Set("Retry-After", strconv.Itoa(int(s.o.RetryAfter.Seconds())))
		fail("busy", fmt.Errorf("%w: %d downloads in progress (ota.max_downloads); retry later", ErrBusy, cap(s.sem)))
		return
	}
	f, err := os.Open(s.artifactPath(sha))
	if err != nil {
		s.log.Error("ota: artifact missing from the artifact directory", "sha256", sha, "err", err)
		fail("error", fmt.Errorf("ota: artifact %s: %w", sha, err))
		return
	}
	defer func() { _ = f.Close() }() // read-only
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+sha+`"`)
	h.Set("Cache-Control", "private, no-transform")
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, sha, time.UnixMilli(uploaded), f)
	s.m.bytesServed.Add(uint64(cw.n))
	if cw.status >= 400 {
		result = "range_error"
	}
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// countingWriter counts the body bytes written.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}
