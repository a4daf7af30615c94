package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// ErrSchemaTooNew is returned by Migrate when the database was migrated by a
// newer program than this one: its schema version is above the last
// migration this program knows. Nothing is changed.
var ErrSchemaTooNew = errors.New("database schema is newer than this program")

// Migration is one step of a schema's history. Versions start at 1 and have
// no gaps; a database at version n has had migrations 1..n applied. The
// version is stored in the database header (PRAGMA user_version).
type Migration struct {
	Version int
	Name    string // for error messages, e.g. "init"
	SQL     string // one or more statements, run in the migration's transaction
	// Up, if not nil, runs after SQL in the same transaction (data
	// migrations that need Go code).
	Up func(ctx context.Context, tx *sql.Tx) error
}

// LoadMigrations reads the migrations stored as files named
// "<version>_<name>.sql" (e.g. "0001_init.sql") at the root of fsys, usually
// an embed.FS (use fs.Sub for a subdirectory). Other files are ignored. The
// result is sorted by version.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("sqlitex: read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, rest, _ := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("sqlitex: migration file %q: name must be <version>_<name>.sql with version ≥ 1", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("sqlitex: read migration %q: %w", name, err)
		}
		ms = append(ms, Migration{Version: v, Name: rest, SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	if err := checkMigrations(ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// checkMigrations verifies that ms, sorted by version, is 1..len(ms).
func checkMigrations(ms []Migration) error {
	if len(ms) == 0 {
		return errors.New("sqlitex: no migrations")
	}
	for i, m := range ms {
		if m.Version != i+1 {
			return fmt.Errorf("sqlitex: migrations must be numbered 1..%d without gaps or duplicates: position %d has version %d (%s)", len(ms), i+1, m.Version, m.Name)
		}
	}
	return nil
}

// SchemaVersion returns the schema version stored in the database header
// (PRAGMA user_version); 0 for a new database.
func SchemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("sqlitex: read schema version: %w", Classify(err))
	}
	return v, nil
}

// Migrate applies, in order, every migration above the database's schema
// version, each in its own transaction together with the new version number:
// a failed migration leaves the database at the previous version. It returns
// an error wrapping ErrSchemaTooNew, and changes nothing, if the database is
// newer than the last migration. Several processes may call Migrate on the
// same file at once: each migration is applied exactly once.
//
// SQLite ignores PRAGMA foreign_keys inside a transaction: a migration that
// rebuilds a table referenced by foreign keys must take that into account
// (see https://www.sqlite.org/lang_altertable.html#otheralter).
func Migrate(ctx context.Context, db *sql.DB, migrations []Migration) error {
	ms := slices.Clone(migrations)
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	if err := checkMigrations(ms); err != nil {
		return err
	}
	latest := len(ms)
	for {
		cur, err := SchemaVersion(ctx, db)
		if err != nil {
			return err
		}
		if cur > latest {
			return fmt.Errorf("sqlitex: migrate: %w: the database is at schema version %d, this program knows versions up to %d (run the newer program, or restore a backup made for this one)", ErrSchemaTooNew, cur, latest)
		}
		if cur == latest {
			return nil
		}
		if err := apply(ctx, db, ms[cur], cur); err != nil {
			return err
		}
	}
}

// errRaced means another connection migrated the database first.
var errRaced = errors.New("schema version changed")

// apply runs m in a transaction if the database is still at version from.
func apply(ctx context.Context, db *sql.DB, m Migration, from int) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlitex: migration %d (%s): begin: %w", m.Version, m.Name, Classify(err))
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the migration's error is the one to report
		}
		if errors.Is(err, errRaced) {
			err = nil // the caller re-reads the version
		}
	}()
	var cur int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&cur); err != nil {
		return fmt.Errorf("sqlitex: migration %d (%s): read schema version: %w", m.Version, m.Name, Classify(err))
	}
	if cur != from {
		return errRaced
	}
	if strings.TrimSpace(m.SQL) != "" {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("sqlitex: migration %d (%s): %w", m.Version, m.Name, Classify(err))
		}
	}
	if m.Up != nil {
		if err := m.Up(ctx, tx); err != nil {
			return fmt.Errorf("sqlitex: migration %d (%s): %w", m.Version, m.Name, Classify(err))
		}
	}
	// PRAGMA takes no bound parameters; the version is an int.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(m.Version)); err != nil {
		return fmt.Errorf("sqlitex: migration %d (%s): set schema version: %w", m.Version, m.Name, Classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlitex: migration %d (%s): commit: %w", m.Version, m.Name, Classify(err))
	}
	return nil
}
