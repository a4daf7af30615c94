package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// Transition is one presence change of a device.
type Transition struct {
	Device string `json:"device"`
	TimeMS int64  `json:"t"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Epoch  uint64 `json:"epoch"`
	Remote string `json:"remote,omitempty"`
}

// Device is a device as the API shows it.
type Device struct {
	Name        string            `json:"id"`
	CreatedMS   int64             `json:"created"`
	Labels      map[string]string `json:"labels"`
	State       string            `json:"state"`
	SinceMS     int64             `json:"since"`
	Reason      string            `json:"reason,omitempty"`
	Epoch       uint64            `json:"epoch"`
	LastHBMS    int64             `json:"last_heartbeat,omitempty"`
	HBIntervalS int               `json:"heartbeat_interval_s,omitempty"`
	Firmware    string            `json:"firmware,omitempty"`
	Remote      string            `json:"remote,omitempty"`
	TokenExpMS  int64             `json:"token_expires,omitempty"`
	LastSeq     uint64            `json:"last_seq"`
	Heartbeat   json.RawMessage   `json:"heartbeat,omitempty"`
	OpenAlerts  int               `json:"open_alerts"`
}

// SaveTransition records a presence transition and the device's current state.
// It does not wait for the commit; Close drains it.
func (s *Store) SaveTransition(ctx context.Context, t Transition, hbIntervalS int, firmware string, tokenExpMS int64) error {
	return s.exec(ctx, false, func(w *wtx) error {
		tx := w.tx
		id, err := s.deviceID(w, t.Device)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO presence(device_id, t_ms, state, reason, epoch, remote) VALUES(?,?,?,?,?,?)`,
			id, t.TimeMS, t.State, t.Reason, int64(t.Epoch), t.Remote); err != nil {
			return fmt.Errorf("presence: %w", err)
		}
		q := `UPDATE devices SET state=?, state_since_ms=?, reason=?, epoch=?`
		args := []any{t.State, t.TimeMS, t.Reason, int64(t.Epoch)}
		if t.State == "online" {
			q += `, remote=?, hb_interval_s=?, token_exp_ms=?`
			args = append(args, t.Remote, hbIntervalS, tokenExpMS)
			if firmware != "" {
				q += `, firmware=?`
				args = append(args, firmware)
			}
		}
		args = append(args, id)
		if _, err := tx.Exec(q+` WHERE id=?`, args...); err != nil {
			return fmt.Errorf("device state: %w", err)
		}
		return nil
	})
}

// SaveHeartbeat records a device's latest heartbeat (not its history).
func (s *Store) SaveHeartbeat(ctx context.Context, device string, tMS int64, hb protocol.Heartbeat) error {
	body, err := json.Marshal(hb)
	if err != nil {
		return fmt.Errorf("store: heartbeat: %w", err)
	}
	return s.exec(ctx, false, func(w *wtx) error {
		tx := w.tx
		id, err := s.deviceID(w, device)
		if err != nil {
			return err
		}
		q := `UPDATE devices SET last_hb_ms=?, heartbeat=?`
		args := []any{tMS, string(body)}
		if hb.Firmware != "" {
			q += `, firmware=?`
			args = append(args, hb.Firmware)
		}
		_, err = tx.Exec(q+` WHERE id=?`, append(args, id)...)
		return err
	})
}

// SetLabels replaces a device's labels, creating the device if needed.
func (s *Store) SetLabels(ctx context.Context, device string, labels map[string]string) error {
	b, err := json.Marshal(labels)
	if err != nil {
		return fmt.Errorf("store: labels: %w", err)
	}
	return s.exec(ctx, true, func(w *wtx) error {
		tx := w.tx
		id, err := s.deviceID(w, device)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`UPDATE devices SET labels=? WHERE id=?`, string(b), id)
		return err
	})
}

const deviceCols = `d.name, d.created_ms, d.labels, d.state, d.state_since_ms, d.reason, d.epoch, d.last_hb_ms,
	d.hb_interval_s, d.firmware, d.remote, d.token_exp_ms,
	coalesce((SELECT max(l.seq) FROM log l WHERE l.device_id = d.id), d.last_seq), d.heartbeat,
	(SELECT count(*) FROM alerts a WHERE a.device_id = d.id AND a.state = 'active')`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var labels, hb string
	var epoch, lastSeq int64
	err := sc.Scan(&d.Name, &d.CreatedMS, &labels, &d.State, &d.SinceMS, &d.Reason, &epoch, &d.LastHBMS,
		&d.HBIntervalS, &d.Firmware, &d.Remote, &d.TokenExpMS, &lastSeq, &hb, &d.OpenAlerts)
	if err != nil {
		return d, err
	}
	d.Epoch, d.LastSeq = uint64(epoch), uint64(lastSeq)
	d.Labels = map[string]string{}
	_ = json.Unmarshal([]byte(labels), &d.Labels)
	if hb != "" {
		d.Heartbeat = json.RawMessage(hb)
	}
	return d, nil
}

// Devices lists every device, by name.
func (s *Store) Devices(ctx context.Context) ([]Device, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+deviceCols+` FROM devices d ORDER BY d.name`)
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: devices: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Device returns one device.
func (s *Store) Device(ctx context.Context, name string) (Device, error) {
	if err := s.settle(ctx); err != nil {
		return Device{}, err
	}
	d, err := scanDevice(s.db.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices d WHERE d.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("device %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("store: device: %w", err)
	}
	return d, nil
}

// Presence returns a device's presence history, newest first.
func (s *Store) Presence(ctx context.Context, name string, limit int) ([]Transition, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.t_ms, p.state, p.reason, p.epoch, p.remote FROM presence p
		JOIN devices d ON d.id = p.device_id WHERE d.name = ? ORDER BY p.t_ms DESC, p.rowid DESC LIMIT ?`, name, limit)
	if err != nil {
		return nil, fmt.Errorf("store: presence: %w", err)
	}
	defer rows.Close()
	out := []Transition{}
	for rows.Next() {
		t := Transition{Device: name}
		var epoch int64
		if err := rows.Scan(&t.TimeMS, &t.State, &t.Reason, &epoch, &t.Remote); err != nil {
			return nil, fmt.Errorf("store: presence: %w", err)
		}
		t.Epoch = uint64(epoch)
		out = append(out, t)
	}
	return out, rows.Err()
}

// Log returns up to limit records of a device with seq > sinceSeq, in seq order.
func (s *Store) Log(ctx context.Context, name string, sinceSeq uint64, limit int) ([]json.RawMessage, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT l.body FROM log l JOIN devices d ON d.id = l.device_id
		WHERE d.name = ? AND l.seq > ? ORDER BY l.seq LIMIT ?`, name, int64(sinceSeq), limit)
	if err != nil {
		return nil, fmt.Errorf("store: log: %w", err)
	}
	defer rows.Close()
	out := []json.RawMessage{}
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("store: log: %w", err)
		}
		out = append(out, json.RawMessage(b))
	}
	return out, rows.Err()
}

// Seqs returns every stored seq of a device in order (tests and audits).
func (s *Store) Seqs(ctx context.Context, name string) ([]uint64, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT l.seq FROM log l JOIN devices d ON d.id = l.device_id WHERE d.name = ? ORDER BY l.seq`, name)
	if err != nil {
		return nil, fmt.Errorf("store: seqs: %w", err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, uint64(v))
	}
	return out, rows.Err()
}

// Point is one chart point.
type Point struct {
	TimeMS int64   `json:"t"`
	Value  float64 `json:"v"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Readings returns a sensor's readings in [fromMS, toMS], averaged into at
// most maxPoints buckets (with min and max), so a week of 1 Hz data stays small.
func (s *Store) Readings(ctx context.Context, name, sensor string, fromMS, toMS int64, maxPoints int) ([]Point, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	if maxPoints <= 0 {
		maxPoints = 1000
	}
	bucket := (toMS - fromMS) / int64(maxPoints)
	if bucket < 1 {
		bucket = 1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT (l.t_ms - ?) / ? AS b, min(l.t_ms), avg(l.value), min(l.value), max(l.value), count(*)
		FROM log l JOIN devices d ON d.id = l.device_id
		WHERE d.name = ? AND l.sensor = ? AND l.kind = 'reading' AND l.t_ms BETWEEN ? AND ?
		GROUP BY b ORDER BY b`, fromMS, bucket, name, sensor, fromMS, toMS)
	if err != nil {
		return nil, fmt.Errorf("store: readings: %w", err)
	}
	defer rows.Close()
	out := []Point{}
	for rows.Next() {
		var p Point
		var b int64
		if err := rows.Scan(&b, &p.TimeMS, &p.Value, &p.Min, &p.Max, &p.N); err != nil {
			return nil, fmt.Errorf("store: readings: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Sensors lists the sensors a device has reported readings for.
func (s *Store) Sensors(ctx context.Context, name string) ([]string, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT l.sensor FROM log l JOIN devices d ON d.id = l.device_id
		WHERE d.name = ? AND l.kind = 'reading' ORDER BY 1`, name)
	if err != nil {
		return nil, fmt.Errorf("store: sensors: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Retain applies the retention limits now.
func (s *Store) Retain(ctx context.Context) error {
	if err := s.settle(ctx); err != nil {
		return err
	}
	return s.retain(ctx)
}

// retain applies the retention limits to log (the writer moved the intake).
func (s *Store) retain(ctx context.Context) error {
	if s.opts.RetainAge > 0 {
		cut := s.opts.Now().Add(-s.opts.RetainAge).UnixMilli()
		if _, err := s.db.ExecContext(ctx, `DELETE FROM log WHERE recv_ms < ?`, cut); err != nil {
			return fmt.Errorf("store: retain by age: %w", err)
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM presence WHERE t_ms < ?`, cut); err != nil {
			return fmt.Errorf("store: retain presence: %w", err)
		}
	}
	if s.opts.RetainRows > 0 {
		var n int64
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM log`).Scan(&n); err != nil {
			return fmt.Errorf("store: count: %w", err)
		}
		if over := n - s.opts.RetainRows; over > 0 {
			if _, err := s.db.ExecContext(ctx, `DELETE FROM log WHERE (device_id, seq) IN (SELECT device_id, seq FROM log ORDER BY recv_ms LIMIT ?)`, over); err != nil {
				return fmt.Errorf("store: retain by size: %w", err)
			}
		}
	}
	return nil
}
