package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Token is an issued channel token's record (never the token itself).
type Token struct {
	JTI       string          `json:"jti"`
	Device    string          `json:"device"`
	ACL       json.RawMessage `json:"acl"`
	IssuedMS  int64           `json:"issued"`
	ExpiresMS int64           `json:"expires"`
	RevokedMS int64           `json:"revoked,omitempty"`
}

// InsertToken records an issued token.
func (s *Store) InsertToken(ctx context.Context, t Token) error {
	err := s.exec(ctx, true, func(w *wtx) error {
		tx := w.tx
		_, err := tx.Exec(`INSERT INTO tokens(jti, device, acl, issued_ms, expires_ms) VALUES(?,?,?,?,?)`,
			t.JTI, t.Device, string(t.ACL), t.IssuedMS, t.ExpiresMS)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: insert token: %w", err)
	}
	return nil
}

// RevokeToken marks jti revoked at nowMS. Revoking twice keeps the first time.
// A jti the hub never issued is still recorded (tokens of another hub
// instance, or issued before the store was reset), so the revocation holds.
func (s *Store) RevokeToken(ctx context.Context, jti string, nowMS int64) (Token, error) {
	var t Token
	err := s.exec(ctx, true, func(w *wtx) error {
		tx := w.tx
		if _, err := tx.Exec(`INSERT INTO tokens(jti, device, acl, issued_ms, expires_ms, revoked_ms) VALUES(?, '', '{}', 0, 0, ?)
			ON CONFLICT(jti) DO UPDATE SET revoked_ms = coalesce(revoked_ms, excluded.revoked_ms)`, jti, nowMS); err != nil {
			return err
		}
		var acl string
		return tx.QueryRow(`SELECT jti, device, acl, issued_ms, expires_ms, revoked_ms FROM tokens WHERE jti = ?`, jti).
			Scan(&t.JTI, &t.Device, &acl, &t.IssuedMS, &t.ExpiresMS, &t.RevokedMS)
	})
	if err != nil {
		return t, fmt.Errorf("store: revoke: %w", err)
	}
	return t, nil
}

// Revoked returns every revoked jti whose token has not expired before nowMS
// (expired tokens fail verification anyway). Unknown-expiry revocations stay.
func (s *Store) Revoked(ctx context.Context, nowMS int64) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jti FROM tokens WHERE revoked_ms IS NOT NULL AND (expires_ms = 0 OR expires_ms > ?)`, nowMS)
	if err != nil {
		return nil, fmt.Errorf("store: revoked: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// Tokens lists tokens, newest first; device filters when not empty.
func (s *Store) Tokens(ctx context.Context, device string, limit int) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jti, device, acl, issued_ms, expires_ms, coalesce(revoked_ms, 0) FROM tokens
		WHERE (? = '' OR device = ?) ORDER BY issued_ms DESC LIMIT ?`, device, device, limit)
	if err != nil {
		return nil, fmt.Errorf("store: tokens: %w", err)
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		var t Token
		var acl string
		if err := rows.Scan(&t.JTI, &t.Device, &acl, &t.IssuedMS, &t.ExpiresMS, &t.RevokedMS); err != nil {
			return nil, fmt.Errorf("store: tokens: %w", err)
		}
		t.ACL = json.RawMessage(acl)
		out = append(out, t)
	}
	return out, rows.Err()
}

// TokenByJTI returns one token record.
func (s *Store) TokenByJTI(ctx context.Context, jti string) (Token, error) {
	var t Token
	var acl string
	err := s.db.QueryRowContext(ctx, `SELECT jti, device, acl, issued_ms, expires_ms, coalesce(revoked_ms, 0) FROM tokens WHERE jti = ?`, jti).
		Scan(&t.JTI, &t.Device, &acl, &t.IssuedMS, &t.ExpiresMS, &t.RevokedMS)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("token %q: %w", jti, ErrNotFound)
	}
	t.ACL = json.RawMessage(acl)
	return t, err
}
