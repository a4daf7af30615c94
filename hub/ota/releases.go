package ota

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/internal/fsx"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Release is a stored release as the API shows it.
type Release struct {
	Version    string `json:"version"`
	Target     string `json:"target"` // os/arch[/variant][ (board)]
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"`
	KeyID      string `json:"kid"`
	Notes      string `json:"notes,omitempty"`
	CreatedMS  int64  `json:"created"`  // signing time
	UploadedMS int64  `json:"uploaded"` // when the hub stored it
}

// UploadResponse answers POST /api/v1/ota/releases.
type UploadResponse struct {
	Release Release `json:"release"`
	Created bool    `json:"created"` // false: the same release was already stored
}

// Multipart part names of an upload, in this order.
const (
	PartManifest = "manifest"
	PartArtifact = "artifact"
)

const releaseCols = `version, target, sha256, size, kid, notes, created_ms, uploaded_ms`

func scanRelease(sc interface{ Scan(...any) error }) (Release, error) {
	var r Release
	err := sc.Scan(&r.Version, &r.Target, &r.SHA256, &r.Size, &r.KeyID, &r.Notes, &r.CreatedMS, &r.UploadedMS)
	return r, err
}

// Releases lists the stored releases, newest upload first.
func (s *Service) Releases(ctx context.Context) ([]Release, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+releaseCols+` FROM ota_releases ORDER BY uploaded_ms DESC, version DESC`)
	if err != nil {
		return nil, fmt.Errorf("ota: releases: %w", err)
	}
	defer rows.Close()
	out := []Release{}
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, fmt.Errorf("ota: releases: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Service) listReleases(w http.ResponseWriter, r *http.Request) error {
	rs, err := s.Releases(r.Context())
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"releases": rs})
	return nil
}

// artifactPath is where the artifact with digest sha lives.
func (s *Service) artifactPath(sha string) string { return filepath.Join(s.o.ArtifactDir, sha) }

// upload stores a release from multipart/form-data with the parts
// "manifest" (the signed manifest file) and then "artifact". The manifest
// is verified first, so the artifact is read at most to the manifest's
// size plus one byte while it is hashed into a temporary file; only a
// release whose signature, size and digest hold is moved into place.
func (s *Service) upload(w http.ResponseWriter, r *http.Request) (err error) {
	defer func() {
		if err != nil {
			s.m.uploads.Inc("rejected")
		}
	}()
	if len(s.o.ReleaseKeys.KeyIDs()) == 0 {
		return ErrNoReleaseKeys
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		return fmt.Errorf("%w: want multipart/form-data with the parts %q then %q, got Content-Type %q", api.ErrBadRequest, PartManifest, PartArtifact, r.Header.Get("Content-Type"))
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	part, err := mr.NextPart()
	if err != nil {
		return fmt.Errorf("%w: reading the %q part: %w", api.ErrBadRequest, PartManifest, err)
	}
	if part.FormName() != PartManifest {
		return fmt.Errorf("%w: first part is %q; send %q first, then %q", api.ErrBadRequest, part.FormName(), PartManifest, PartArtifact)
	}
	data, err := io.ReadAll(io.LimitReader(part, manifest.MaxManifestSize+1))
	if err != nil {
		return fmt.Errorf("%w: reading the manifest: %w", api.ErrBadRequest, err)
	}
	m, err := manifest.VerifyManifest(s.o.ReleaseKeys, data)
	if err != nil {
		return err
	}
	rel := Release{Version: m.Version.String(), Target: m.Target.String(), SHA256: m.SHA256, Size: m.Size, KeyID: m.KeyID,
		Notes: m.Notes, CreatedMS: m.Created.UnixMilli()}
	if m.Size > s.o.MaxArtifactSize {
		return fmt.Errorf("%w: artifact is %d bytes, ota.max_artifact_size is %d", api.ErrTooLarge, m.Size, s.o.MaxArtifactSize)
	}
	existing, err := s.conflict(r.Context(), rel)
	if err != nil {
		return err
	}

	part, err = mr.NextPart()
	if err != nil {
		return fmt.Errorf("%w: reading the %q part: %w", api.ErrBadRequest, PartArtifact, err)
	}
	if part.FormName() != PartArtifact {
		return fmt.Errorf("%w: second part is %q, want %q", api.ErrBadRequest, part.FormName(), PartArtifact)
	}
	tmp, err := os.CreateTemp(s.o.ArtifactDir, ".upload-*")
	if err != nil {
		return fmt.Errorf("ota: upload: %w", err)
	}
	defer func() {
		if tmp != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name()) // nothing half-uploaded stays behind
		}
	}()
	// CheckArtifact reads at most Size+1 bytes; each is written to tmp as read.
	if err := manifest.CheckArtifact(m, io.TeeReader(part, tmp)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return fmt.Errorf("%w (artifact %s)", err, rel.Version)
	}
	if p, err := mr.NextPart(); err == nil {
		return fmt.Errorf("%w: unexpected part %q after %q", api.ErrBadRequest, p.FormName(), PartArtifact)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: after the artifact: %w", api.ErrBadRequest, err)
	}
	if existing {
		s.m.uploads.Inc("duplicate")
		stored, err := s.release(r.Context(), rel.SHA256)
		if err != nil {
			return err
		}
		api.WriteJSON(w, http.StatusOK, UploadResponse{Release: stored, Created: false})
		return nil
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("ota: upload: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ota: upload: %w", err)
	}
	created, err := s.commitRelease(r.Context(), rel, tmp.Name(), data)
	if err != nil {
		return err
	}
	tmp = nil // moved into place (or a concurrent identical upload won)
	stored, err := s.release(r.Context(), rel.SHA256)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		s.m.uploads.Inc("created")
		s.log.Info("ota: release stored", "version", stored.Version, "target", stored.Target, "sha256", stored.SHA256, "size", stored.Size, "kid", stored.KeyID)
		s.announce(stored)
	} else {
		s.m.uploads.Inc("duplicate")
	}
	api.WriteJSON(w, status, UploadResponse{Release: stored, Created: created})
	return nil
}

// conflict reports whether rel is already stored (an idempotent repeat) and
// refuses a different artifact under the same version and target, or the
// same artifact under another version or target.
func (s *Service) conflict(ctx context.Context, rel Release) (bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+releaseCols+` FROM ota_releases WHERE sha256 = ? OR (version = ? AND target = ?)`,
		rel.SHA256, rel.Version, rel.Target)
	if err != nil {
		return false, fmt.Errorf("ota: releases: %w", err)
	}
	defer rows.Close()
	same := false
	for rows.Next() {
		o, err := scanRelease(rows)
		if err != nil {
			return false, fmt.Errorf("ota: releases: %w", err)
		}
		switch {
		case o.SHA256 == rel.SHA256 && o.Version == rel.Version && o.Target == rel.Target:
			same = true
		case o.SHA256 == rel.SHA256:
			return false, fmt.Errorf("%w: artifact %s is already release %s for %s", api.ErrConflict, rel.SHA256, o.Version, o.Target)
		default:
			return false, fmt.Errorf("%w: release %s for %s already exists with another artifact (sha256 %s); give the new build a new version",
				api.ErrConflict, o.Version, o.Target, o.SHA256)
		}
	}
	return same, rows.Err()
}

// commitRelease moves the verified artifact into place, writes its manifest
// beside it and records the release. It reports false if an identical
// upload committed first.
func (s *Service) commitRelease(ctx context.Context, rel Release, tmpPath string, manifestData []byte) (bool, error) {
	s.uploadMu.Lock()
	defer s.uploadMu.Unlock()
	same, err := s.conflict(ctx, rel)
	if err != nil || same {
		_ = os.Remove(tmpPath)
		return false, err
	}
	dst := s.artifactPath(rel.SHA256)
	mdst := dst + manifest.ManifestSuffix
	if err := os.Rename(tmpPath, dst); err != nil {
		_ = os.Remove(tmpPath)
		return false, fmt.Errorf("ota: store artifact: %w", err)
	}
	undo := func() { _ = os.Remove(dst); _ = os.Remove(mdst) }
	// Also syncs the directory, so the artifact's rename is durable too.
	if err := fsx.WriteFileAtomic(mdst, manifestData, 0o600); err != nil {
		undo()
		return false, fmt.Errorf("ota: store manifest: %w", err)
	}
	rel.UploadedMS = s.now().UnixMilli()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.db.ExecContext(ctx, `INSERT INTO ota_releases(sha256, version, target, size, kid, notes, created_ms, uploaded_ms, manifest)
		VALUES(?,?,?,?,?,?,?,?,?)`, rel.SHA256, rel.Version, rel.Target, rel.Size, rel.KeyID, rel.Notes, rel.CreatedMS, rel.UploadedMS, manifestData); err != nil {
		undo()
		return false, fmt.Errorf("ota: record release: %w", err)
	}
	return true, nil
}

// release returns one stored release.
func (s *Service) release(ctx context.Context, sha string) (Release, error) {
	r, err := scanRelease(s.db.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM ota_releases WHERE sha256 = ?`, sha))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: no release with sha256 %s", ErrNotFound, sha)
	}
	if err != nil {
		return r, fmt.Errorf("ota: release: %w", err)
	}
	return r, nil
}

// announce publishes the retained release announcement on the fleet topic.
func (s *Service) announce(r Release) {
	b, err := json.Marshal(protocol.OTARelease{V: protocol.Version, Release: r.Version, Target: r.Target, SHA256: r.SHA256, Time: r.UploadedMS})
	if err == nil {
		err = s.o.Publisher.Publish(protocol.TopicFleetOTA, b, true, 1)
	}
	if err != nil {
		s.log.Warn("ota: release announcement not published", "version", r.Version, "err", err)
	}
}

// announceLatest re-publishes the newest release's announcement (the
// broker's retained messages do not survive a restart).
func (s *Service) announceLatest(ctx context.Context) error {
	r, err := scanRelease(s.db.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM ota_releases ORDER BY uploaded_ms DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ota: latest release: %w", err)
	}
	s.announce(r)
	return nil
}
