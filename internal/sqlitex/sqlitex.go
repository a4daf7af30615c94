// Package sqlitex opens SQLite databases (the pure-Go modernc.org/sqlite
// driver) with the settings Outpost relies on, applies embedded, versioned
// schema migrations, and classifies storage failures (disk full, read-only,
// I/O errors) so that callers can report them clearly.
//
// Every connection Open hands out is configured through the DSN, so that
// connections the database/sql pool opens later get the same settings:
//
//   - journal_mode=WAL: readers never block the writer, one fsync per commit;
//   - busy_timeout=5000: a writer waits up to 5 s for the write lock;
//   - foreign_keys=1;
//   - synchronous=NORMAL (the default) or FULL (Options.FullSync);
//   - _txlock=immediate: BEGIN takes the write lock at once, so a
//     read-then-write transaction waits for the lock (busy_timeout) instead
//     of failing with SQLITE_BUSY when it first writes.
//
// In WAL mode synchronous=NORMAL keeps the database consistent after a power
// cut but may lose the last transactions committed before it; FULL fsyncs the
// WAL at every commit, so a transaction that committed survives a power cut.
//
// Store times as integers (unix ms or ns), never as driver-formatted strings.
package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DriverName is the database/sql driver name of modernc.org/sqlite.
const DriverName = "sqlite"

// DefaultBusyTimeout is how long a connection waits for a lock held by
// another connection before failing with SQLITE_BUSY.
const DefaultBusyTimeout = 5 * time.Second

// Options configure Open. The zero value is a read-write database with
// synchronous=NORMAL.
type Options struct {
	// ReadOnly opens the database with SQLite's mode=ro: a missing file is an
	// error (it is not created), every write fails with SQLITE_READONLY, and
	// the journal mode is left as it is. Reading a WAL database still needs
	// its -shm file, or a writable directory to create it.
	ReadOnly bool

	// FullSync selects synchronous=FULL: every commit fsyncs the WAL, so a
	// committed transaction survives a power cut. The default, NORMAL, only
	// syncs at checkpoints: the database stays consistent after a power cut
	// but may lose the last commits.
	FullSync bool

	// BusyTimeout is how long to wait for another connection's lock;
	// 0 means DefaultBusyTimeout.
	BusyTimeout time.Duration

	// MaxOpenConns bounds the pool (database/sql's SetMaxOpenConns);
	// 0 leaves it unbounded. Idle connections are kept up to the same number,
	// so connections (and their pragmas) are not re-established all the time.
	MaxOpenConns int

	// Pragmas are extra PRAGMA statements run on every new connection, in
	// the driver's _pragma form "name(value)", e.g. "page_size(1024)" or
	// "wal_autocheckpoint(4000)". They run before journal_mode=WAL is set, so
	// page_size takes effect when the database file is created.
	Pragmas []string
}

// Open opens (creating it unless opts.ReadOnly) the SQLite database at path
// with the pragmas described in the package comment, and checks that a first
// connection can be established. The caller owns the returned *sql.DB.
func Open(ctx context.Context, path string, opts Options) (*sql.DB, error) {
	dsn, err := DSN(path, opts)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(DriverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitex: open %s: %w", path, err)
	}
	if opts.MaxOpenConns > 0 {
		db.SetMaxOpenConns(opts.MaxOpenConns)
		db.SetMaxIdleConns(opts.MaxOpenConns)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close() // the ping error is the one to report
		return nil, fmt.Errorf("sqlitex: open %s: %w", path, Classify(err))
	}
	return db, nil
}

// DSN returns the modernc.org/sqlite data source name Open uses for path: a
// file: URI (so that SQLite's own mode=ro is honoured) carrying the pragmas.
func DSN(path string, opts Options) (string, error) {
	if path == "" || path == ":memory:" {
		return "", errors.New("sqlitex: a database file path is required (in-memory databases are per connection)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlitex: database path %q: %w", path, err)
	}
	busy := opts.BusyTimeout
	if busy == 0 {
		busy = DefaultBusyTimeout
	}
	if busy < 0 {
		return "", fmt.Errorf("sqlitex: negative busy timeout %v", busy)
	}
	sync := "NORMAL"
	if opts.FullSync {
		sync = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+sync+")")
	for _, p := range opts.Pragmas {
		if strings.ContainsAny(p, ";") {
			return "", fmt.Errorf("sqlitex: pragma %q: one pragma per entry, without ';'", p)
		}
		q.Add("_pragma", p)
	}
	if opts.ReadOnly {
		q.Set("mode", "ro")
		q.Set("_txlock", "deferred") // BEGIN IMMEDIATE needs a write lock
		q.Add("_pragma", "query_only(1)")
	} else {
		// The shorthand key is applied after every _pragma, so page_size
		// (if given) is set before WAL mode materialises the file.
		q.Set("_journal_mode", "WAL")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String(), nil
}
