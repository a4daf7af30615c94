package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Why a claim cannot be used. The broker refuses CONNECT with 0x87 for each.
var (
	ErrClaimUnknown = errors.New("claim unknown (not issued by this hub's database)")
	ErrClaimExpired = errors.New("claim expired")
	ErrClaimRevoked = errors.New("claim revoked")
	ErrClaimUsed    = errors.New("claim already used by another device")
)

// Claim states of a device.
const (
	ClaimPending  = "pending"
	ClaimAccepted = "accepted"
	ClaimRejected = "rejected"
)

// Claim is a claim token's record.
type Claim struct {
	ID        string            `json:"id"`
	Labels    map[string]string `json:"labels"`
	CreatedMS int64             `json:"created"`
	ExpiresMS int64             `json:"expires"`
	Uses      int               `json:"uses"`
	RevokedMS int64             `json:"revoked,omitempty"`
	Devices   []ClaimDevice     `json:"devices"` // the device ids it is bound to
}

// ClaimDevice is a device id bound to a claim: what it announced and
// whether it was accepted. "id" and "state" read like a device's.
type ClaimDevice struct {
	Device    string            `json:"id"`
	Claim     string            `json:"claim"`
	State     string            `json:"state"`
	Firmware  string            `json:"firmware,omitempty"`
	Board     string            `json:"board,omitempty"`
	Arch      string            `json:"arch,omitempty"`
	Remote    string            `json:"remote,omitempty"`
	UsedMS    int64             `json:"requested"`
	SeenMS    int64             `json:"last_announce"`
	DecidedMS int64             `json:"decided,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"` // the claim's
}

// InsertClaim records an issued claim.
func (s *Store) InsertClaim(ctx context.Context, c Claim) error {
	labels, err := json.Marshal(nonNilMap(c.Labels))
	if err != nil {
		return fmt.Errorf("store: claim labels: %w", err)
	}
	err = s.exec(ctx, true, func(w *wtx) error {
		_, err := w.tx.Exec(`INSERT INTO claims(id, labels, created_ms, expires_ms, uses) VALUES(?,?,?,?,?)`,
			c.ID, string(labels), c.CreatedMS, c.ExpiresMS, c.Uses)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: insert claim: %w", err)
	}
	return nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

type querier interface {
	QueryRow(query string, args ...any) *sql.Row
	Query(query string, args ...any) (*sql.Rows, error)
}

func getClaim(q querier, id string) (Claim, error) {
	var c Claim
	var labels string
	err := q.QueryRow(`SELECT id, labels, created_ms, expires_ms, uses, coalesce(revoked_ms, 0) FROM claims WHERE id = ?`, id).
		Scan(&c.ID, &labels, &c.CreatedMS, &c.ExpiresMS, &c.Uses, &c.RevokedMS)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("claim %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("claim %q: %w", id, err)
	}
	c.Labels = map[string]string{}
	_ = json.Unmarshal([]byte(labels), &c.Labels)
	c.Devices, err = claimDevices(q, `WHERE cd.claim_id = ? ORDER BY cd.used_ms`, id)
	return c, err
}

const claimDeviceCols = `cd.device, cd.claim_id, cd.state, cd.firmware, cd.board, cd.arch, cd.remote, cd.used_ms, cd.seen_ms, cd.decided_ms, c.labels`

func claimDevices(q querier, where string, args ...any) ([]ClaimDevice, error) {
	rows, err := q.Query(`SELECT `+claimDeviceCols+` FROM claim_devices cd JOIN claims c ON c.id = cd.claim_id `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("claim devices: %w", err)
	}
	defer rows.Close()
	out := []ClaimDevice{}
	for rows.Next() {
		var d ClaimDevice
		var labels string
		if err := rows.Scan(&d.Device, &d.Claim, &d.State, &d.Firmware, &d.Board, &d.Arch, &d.Remote, &d.UsedMS, &d.SeenMS, &d.DecidedMS, &labels); err != nil {
			return nil, fmt.Errorf("claim devices: %w", err)
		}
		_ = json.Unmarshal([]byte(labels), &d.Labels)
		out = append(out, d)
	}
	return out, rows.Err()
}

// dbQuerier adapts *sql.DB reads to querier with a context.
type dbQuerier struct {
	ctx context.Context
	db  *sql.DB
}

func (q dbQuerier) QueryRow(query string, args ...any) *sql.Row {
	return q.db.QueryRowContext(q.ctx, query, args...)
}
func (q dbQuerier) Query(query string, args ...any) (*sql.Rows, error) {
	return q.db.QueryContext(q.ctx, query, args...)
}

// Claim returns one claim with its devices.
func (s *Store) Claim(ctx context.Context, id string) (Claim, error) {
	c, err := getClaim(dbQuerier{ctx, s.db}, id)
	if err != nil {
		return c, fmt.Errorf("store: %w", err)
	}
	return c, nil
}

// Claims lists claims, newest first, with their devices.
func (s *Store) Claims(ctx context.Context, limit int) ([]Claim, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM claims ORDER BY created_ms DESC, id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: claims: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: claims: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claims: %w", err)
	}
	out := []Claim{}
	for _, id := range ids {
		c, err := s.Claim(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// RevokeClaim marks a claim revoked at nowMS (the first time counts).
func (s *Store) RevokeClaim(ctx context.Context, id string, nowMS int64) (Claim, error) {
	var c Claim
	err := s.exec(ctx, true, func(w *wtx) error {
		if _, err := w.tx.Exec(`UPDATE claims SET revoked_ms = coalesce(revoked_ms, ?) WHERE id = ?`, nowMS, id); err != nil {
			return err
		}
		var err error
		c, err = getClaim(w.tx, id)
		return err
	})
	if err != nil {
		return c, fmt.Errorf("store: revoke claim: %w", err)
	}
	return c, nil
}

// usable reports why claim c cannot be used by device at nowMS, or nil.
func usable(c Claim, device string, nowMS int64) error {
	switch {
	case c.RevokedMS != 0:
		return ErrClaimRevoked
	case nowMS >= c.ExpiresMS:
		return ErrClaimExpired
	}
	for _, d := range c.Devices {
		if d.Device == device {
			return nil
		}
	}
	if len(c.Devices) >= c.Uses {
		return ErrClaimUsed
	}
	return nil
}

// CheckClaim reports whether device may use claim id at nowMS: it exists,
// is neither revoked nor expired, and is bound to device or has uses left.
// It changes nothing (CONNECT); BindClaim binds.
func (s *Store) CheckClaim(ctx context.Context, id, device string, nowMS int64) error {
	c, err := getClaim(dbQuerier{ctx, s.db}, id)
	if errors.Is(err, ErrNotFound) {
		return ErrClaimUnknown
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return usable(c, device, nowMS)
}

// BindClaim binds claim id to device at its announcement, atomically: the
// same device again only refreshes what it announced; a new device takes a
// use if one is left. A new binding is accepted when autoAccept is set and
// the hub does not know the device id yet (registering a known id again
// needs an operator), otherwise pending. An accepted device exists with the
// claim's labels merged into its own.
func (s *Store) BindClaim(ctx context.Context, id string, d ClaimDevice, nowMS int64, autoAccept bool) (ClaimDevice, error) {
	var out ClaimDevice
	err := s.exec(ctx, true, func(w *wtx) error {
		c, err := getClaim(w.tx, id)
		if errors.Is(err, ErrNotFound) {
			return ErrClaimUnknown
		}
		if err != nil {
			return err
		}
		if err := usable(c, d.Device, nowMS); err != nil {
			return err
		}
		res, err := w.tx.Exec(`UPDATE claim_devices SET firmware=?, board=?, arch=?, remote=?, seen_ms=? WHERE claim_id=? AND device=?`,
			d.Firmware, d.Board, d.Arch, d.Remote, nowMS, id, d.Device)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			state := ClaimPending
			if autoAccept {
				var known int
				if err := w.tx.QueryRow(`SELECT count(*) FROM devices WHERE name = ?`, d.Device).Scan(&known); err != nil {
					return err
				}
				if known == 0 {
					state = ClaimAccepted
				}
			}
			decided := int64(0)
			if state == ClaimAccepted {
				decided = nowMS
				if err := s.mergeLabels(w, d.Device, c.Labels); err != nil {
					return err
				}
			}
			if _, err := w.tx.Exec(`INSERT INTO claim_devices(claim_id, device, state, firmware, board, arch, remote, used_ms, seen_ms, decided_ms)
				VALUES(?,?,?,?,?,?,?,?,?,?)`, id, d.Device, state, d.Firmware, d.Board, d.Arch, d.Remote, nowMS, nowMS, decided); err != nil {
				return err
			}
		}
		ds, err := claimDevices(w.tx, `WHERE cd.claim_id = ? AND cd.device = ?`, id, d.Device)
		if err != nil {
			return err
		}
		out = ds[0]
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("store: bind claim %s to %s: %w", id, d.Device, err)
	}
	return out, nil
}

// mergeLabels creates device if needed and adds labels to its own (the
// given ones win).
func (s *Store) mergeLabels(w *wtx, device string, labels map[string]string) error {
	id, err := s.deviceID(w, device)
	if err != nil {
		return err
	}
	var cur string
	if err := w.tx.QueryRow(`SELECT labels FROM devices WHERE id = ?`, id).Scan(&cur); err != nil {
		return err
	}
	m := map[string]string{}
	_ = json.Unmarshal([]byte(cur), &m)
	for k, v := range labels {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.tx.Exec(`UPDATE devices SET labels = ? WHERE id = ?`, string(b), id)
	return err
}

// PendingDevices lists device ids waiting for an operator, oldest first.
func (s *Store) PendingDevices(ctx context.Context) ([]ClaimDevice, error) {
	ds, err := claimDevices(dbQuerier{ctx, s.db}, `WHERE cd.state = 'pending' ORDER BY cd.used_ms, cd.device`)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return ds, nil
}

// DecideDevice accepts or rejects every pending claim of device. Accepting
// creates the device with its claim's labels. ErrNotFound if none is pending.
func (s *Store) DecideDevice(ctx context.Context, device string, accept bool, nowMS int64) ([]ClaimDevice, error) {
	var out []ClaimDevice
	err := s.exec(ctx, true, func(w *wtx) error {
		ds, err := claimDevices(w.tx, `WHERE cd.device = ? AND cd.state = 'pending' ORDER BY cd.used_ms`, device)
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			return fmt.Errorf("no pending claim for device %q: %w", device, ErrNotFound)
		}
		state := ClaimRejected
		if accept {
			state = ClaimAccepted
		}
		for i := range ds {
			if accept {
				if err := s.mergeLabels(w, device, ds[i].Labels); err != nil {
					return err
				}
			}
			if _, err := w.tx.Exec(`UPDATE claim_devices SET state = ?, decided_ms = ? WHERE claim_id = ? AND device = ?`,
				state, nowMS, ds[i].Claim, device); err != nil {
				return err
			}
			ds[i].State, ds[i].DecidedMS = state, nowMS
		}
		out = ds
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %s %s: %w", map[bool]string{true: "accept", false: "reject"}[accept], device, err)
	}
	return out, nil
}
