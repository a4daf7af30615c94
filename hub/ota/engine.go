package ota

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// reconcile advances rollout id and brings the broker's retained notices
// in line with it.
func (s *Service) reconcile(ctx context.Context, id string) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	return s.reconcileLocked(ctx, id)
}

func (s *Service) reconcileLocked(ctx context.Context, id string) error {
	r, err := loadRollout(ctx, s.db, id, true)
	if errors.Is(err, ErrNotFound) {
		for d, rid := range s.notices {
			if rid == id {
				delete(s.notices, d)
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	if r.state == RolloutActive {
		prevWave := r.wave
		if r.advance(s.now().UnixMilli()) {
			if err := s.saveRollout(ctx, r, RolloutActive); err != nil {
				return err
			}
			switch {
			case r.state == RolloutPaused:
				s.log.Warn("ota: rollout paused", "rollout", id, "reason", r.reason)
			case r.state == RolloutCompleted:
				s.log.Info("ota: rollout completed", "rollout", id, "result", r.reason)
			case r.wave != prevWave:
				s.log.Info("ota: wave started", "rollout", id, "wave", r.wave, "of", len(r.waves))
			}
		}
	}
	var publish, withdraw []string
	for _, d := range r.devices {
		want, has := r.wantsNotice(d), s.notices[d.Device] == id
		switch {
		case want && !has:
			publish = append(publish, d.Device)
		case !want && has:
			withdraw = append(withdraw, d.Device)
		}
	}
	var errs []error
	if len(publish) > 0 {
		if err := s.publishNotices(ctx, r, publish); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range withdraw {
		if err := s.o.Publisher.Publish(protocol.DeviceTopic(d, protocol.SufInOTA), []byte{}, true, 1); err != nil {
			errs = append(errs, fmt.Errorf("ota: withdraw notice of %s: %w", d, err))
			continue
		}
		delete(s.notices, d)
		s.m.withdrawn.Inc()
	}
	return errors.Join(errs...)
}

// publishNotices marks devices notified, then publishes their retained
// notices: the row is "notified" before the device can answer, so its first
// status is never taken for one that came too early.
func (s *Service) publishNotices(ctx context.Context, r *rollout, devices []string) error {
	var mf []byte
	if err := s.db.QueryRowContext(ctx, `SELECT manifest FROM ota_releases WHERE sha256 = ?`, r.sha).Scan(&mf); err != nil {
		return fmt.Errorf("ota: manifest of %s: %w", r.sha, err)
	}
	payload, err := json.Marshal(protocol.OTANotice{V: protocol.Version, Rollout: r.id, Release: r.version, Manifest: mf,
		URL: s.ArtifactURL(r.sha), AllowDowngrade: r.allowDowngrade, Time: r.created})
	if err != nil {
		return fmt.Errorf("ota: notice: %w", err)
	}
	if err := s.markNotified(ctx, r.id, devices); err != nil {
		return err
	}
	var errs []error
	for _, d := range devices {
		if err := s.o.Publisher.Publish(protocol.DeviceTopic(d, protocol.SufInOTA), payload, true, 1); err != nil {
			errs = append(errs, fmt.Errorf("ota: notice to %s: %w", d, err))
			continue
		}
		s.notices[d] = r.id
		s.m.published.Inc()
	}
	return errors.Join(errs...)
}

// markNotified moves devices from pending to notified in one transaction.
func (s *Service) markNotified(ctx context.Context, rollout string, devices []string) error {
	now := s.now().UnixMilli()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ota: mark notified: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // no-op after Commit
	upd, err := tx.PrepareContext(ctx, `UPDATE ota_rollout_devices SET state=?, notified_ms=?, updated_ms=? WHERE rollout=? AND device=? AND state=?`)
	if err != nil {
		return fmt.Errorf("ota: mark notified: %w", err)
	}
	for _, d := range devices {
		if _, err := upd.ExecContext(ctx, protocol.OTANotified, now, now, rollout, d, DevicePending); err != nil {
			_ = upd.Close()
			return fmt.Errorf("ota: mark notified: %w", err)
		}
	}
	_ = upd.Close()
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ota: mark notified: %w", err)
	}
	return nil
}

// handleStatus records a device's OTA status (broker handler for
// ota/status, inline on the device's packet path). One small UPDATE through
// Store.DB(): status reports are few, and the store's busy_timeout and
// _txlock=immediate make it wait for the store's group commits instead of
// failing. Wave logic runs in Run's goroutine.
func (s *Service) handleStatus(device string, payload []byte) error {
	st, err := protocol.DecodeOTAStatus(payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := s.now().UnixMilli()
	s.wmu.Lock()
	res, err := s.db.ExecContext(ctx, `UPDATE ota_rollout_devices SET state = ?,
			bytes = CASE WHEN ? > 0 THEN ? ELSE bytes END, total = CASE WHEN ? > 0 THEN ? ELSE total END,
			reason = ?, fw = CASE WHEN ? != '' THEN ? ELSE fw END, updated_ms = ?
		WHERE rollout = ? AND device = ? AND state NOT IN ('pending','succeeded','failed','rolled_back')
			AND (? = '' OR ? = (SELECT version FROM ota_rollouts WHERE id = ?))`,
		st.State, st.Bytes, st.Bytes, st.Total, st.Total, st.Reason, st.Firmware, st.Firmware, now,
		st.Rollout, device, st.Release, st.Release, st.Rollout)
	s.wmu.Unlock()
	if err != nil {
		s.log.Error("ota: status not recorded", "device", device, "rollout", st.Rollout, "state", st.State, "err", err)
		return fmt.Errorf("ota: record status: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		s.ignoreStatus(ctx, device, st)
		return nil
	}
	s.m.statuses.Inc(st.State)
	if failure(st.State) {
		s.log.Warn("ota: device update failed", "device", device, "rollout", st.Rollout, "state", st.State, "reason", st.Reason)
	}
	if terminal(st.State) {
		s.markDirty(st.Rollout)
	}
	return nil
}

// ignoreStatus logs why a status changed nothing. It is acknowledged all
// the same: it is well-formed, only stale or misdirected.
func (s *Service) ignoreStatus(ctx context.Context, device string, st protocol.OTAStatus) {
	s.m.ignored.Inc()
	var state, version string
	err := s.db.QueryRowContext(ctx, `SELECT d.state, r.version FROM ota_rollout_devices d JOIN ota_rollouts r ON r.id = d.rollout
		WHERE d.rollout = ? AND d.device = ?`, st.Rollout, device).Scan(&state, &version)
	why := ""
	switch {
	case errors.Is(err, sql.ErrNoRows):
		why = "no such rollout targets this device"
	case err != nil:
		why = "lookup failed: " + err.Error()
	case terminal(state):
		why = "the device already finished this rollout as " + state
	case state == DevicePending:
		why = "the device's wave has not started"
	case st.Release != version:
		why = "release " + st.Release + " is not the rollout's " + version
	default:
		why = "changed meanwhile"
	}
	s.log.Info("ota: status ignored", "device", device, "rollout", st.Rollout, "state", st.State, "why", why)
}
