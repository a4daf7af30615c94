package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Alert is one alert as the API shows it: raised by a gateway's rule,
// possibly cleared, possibly acknowledged by an operator. (device, rule,
// sensor, raised) identifies it.
type Alert struct {
	Device   string  `json:"device"`
	Rule     string  `json:"rule"`
	Sensor   string  `json:"sensor"`
	State    string  `json:"state"` // active | cleared
	Severity string  `json:"severity,omitempty"`
	Value    float64 `json:"value"`
	Message  string  `json:"message,omitempty"`
	RaisedMS int64   `json:"raised"`
	ClearMS  int64   `json:"cleared,omitempty"`
	Seq      uint64  `json:"seq"`
	AckedMS  int64   `json:"acked,omitempty"`
	AckedBy  string  `json:"acked_by,omitempty"`
}

// AlertKey names one alert.
type AlertKey struct {
	Device   string `json:"device"`
	Rule     string `json:"rule"`
	Sensor   string `json:"sensor"`
	RaisedMS int64  `json:"raised"`
}

// AlertQuery filters Alerts. Zero values do not filter.
type AlertQuery struct {
	State   string // "active" or "cleared"
	Device  string
	SinceMS int64 // raised or cleared at or after (active ones always match)
	Acked   *bool // acknowledged or not
	Limit   int   // default 500
}

const alertCols = `d.name, a.rule, a.sensor, a.state, a.severity, a.value, a.message, a.raised_ms,
	coalesce(a.cleared_ms, 0), a.seq, coalesce(a.acked_ms, 0), coalesce(a.acked_by, '')`

func scanAlert(sc interface{ Scan(...any) error }) (Alert, error) {
	var a Alert
	var seq int64
	err := sc.Scan(&a.Device, &a.Rule, &a.Sensor, &a.State, &a.Severity, &a.Value, &a.Message, &a.RaisedMS,
		&a.ClearMS, &seq, &a.AckedMS, &a.AckedBy)
	a.Seq = uint64(seq)
	return a, err
}

// Alerts lists alerts matching q, newest raised first, and how many match
// in all (before the limit).
func (s *Store) Alerts(ctx context.Context, q AlertQuery) ([]Alert, int, error) {
	if err := s.settle(ctx); err != nil {
		return nil, 0, err
	}
	if q.Limit <= 0 {
		q.Limit = 500
	}
	var where []string
	var args []any
	if q.State != "" {
		where = append(where, `a.state = ?`)
		args = append(args, q.State)
	}
	if q.Device != "" {
		where = append(where, `d.name = ?`)
		args = append(args, q.Device)
	}
	if q.SinceMS > 0 {
		where = append(where, `(a.raised_ms >= ? OR coalesce(a.cleared_ms, 0) >= ? OR a.state = 'active')`)
		args = append(args, q.SinceMS, q.SinceMS)
	}
	if q.Acked != nil {
		if *q.Acked {
			where = append(where, `a.acked_ms IS NOT NULL`)
		} else {
			where = append(where, `a.acked_ms IS NULL`)
		}
	}
	from := ` FROM alerts a JOIN devices d ON d.id = a.device_id`
	if len(where) > 0 {
		from += ` WHERE ` + strings.Join(where, ` AND `)
	}
	var total int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*)`+from, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: alerts: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+alertCols+from+` ORDER BY a.raised_ms DESC, d.name, a.rule, a.sensor LIMIT ?`,
		append(args, q.Limit)...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: alerts: %w", err)
	}
	defer rows.Close()
	out := []Alert{}
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: alerts: %w", err)
		}
		out = append(out, a)
	}
	return out, total, rows.Err()
}

// AckAlert records that by acknowledged the alert k at nowMS and returns it.
// Acknowledging twice keeps the first acknowledgement; an alert that does
// not exist is ErrNotFound.
func (s *Store) AckAlert(ctx context.Context, k AlertKey, by string, nowMS int64) (Alert, error) {
	var a Alert
	if err := s.settle(ctx); err != nil {
		return a, err
	}
	err := s.exec(ctx, true, func(w *wtx) error {
		if _, err := w.tx.Exec(`UPDATE alerts SET acked_ms = ?, acked_by = ?
			WHERE acked_ms IS NULL AND rule = ? AND sensor = ? AND raised_ms = ?
			AND device_id = (SELECT id FROM devices WHERE name = ?)`, nowMS, by, k.Rule, k.Sensor, k.RaisedMS, k.Device); err != nil {
			return err
		}
		var err error
		a, err = scanAlert(w.tx.QueryRow(`SELECT `+alertCols+` FROM alerts a JOIN devices d ON d.id = a.device_id
			WHERE d.name = ? AND a.rule = ? AND a.sensor = ? AND a.raised_ms = ?`, k.Device, k.Rule, k.Sensor, k.RaisedMS))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("alert %s/%s/%s@%d: %w", k.Device, k.Rule, k.Sensor, k.RaisedMS, ErrNotFound)
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return a, err
		}
		return a, fmt.Errorf("store: ack alert: %w", err)
	}
	return a, nil
}
