package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

func openT(t *testing.T, path string, opts Options) *sql.DB {
	t.Helper()
	db, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

func pragma(t *testing.T, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, name string) string {
	t.Helper()
	var v string
	if err := q.QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestOpenPragmasOnEveryConnection(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts Options
		sync string
	}{
		{"default", Options{}, "1"},
		{"full", Options{FullSync: true}, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openT(t, filepath.Join(t.TempDir(), "a b?#.db"), tc.opts)
			// Hold several connections at once so the pool opens new ones.
			var conns []*sql.Conn
			for range 3 {
				c, err := db.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			for i, c := range conns {
				want := map[string]string{
					"journal_mode": "wal",
					"busy_timeout": "5000",
					"foreign_keys": "1",
					"synchronous":  tc.sync,
					"query_only":   "0",
				}
				for p, w := range want {
					if got := pragma(t, c, p); got != w {
						t.Errorf("conn %d: PRAGMA %s = %s, want %s", i, p, got, w)
					}
				}
			}
			for _, c := range conns {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestOpenExtraPragmasAndPageSize(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "p.db"), Options{
		Pragmas: []string{"page_size(1024)", "wal_autocheckpoint(321)"},
	})
	if _, err := db.Exec("CREATE TABLE t(x)"); err != nil {
		t.Fatal(err)
	}
	if got := pragma(t, db, "page_size"); got != "1024" {
		t.Errorf("page_size = %s, want 1024 (set before WAL creates the file)", got)
	}
	if got := pragma(t, db, "wal_autocheckpoint"); got != "321" {
		t.Errorf("wal_autocheckpoint = %s, want 321", got)
	}
	if got := pragma(t, db, "journal_mode"); got != "wal" {
		t.Errorf("journal_mode = %s, want wal", got)
	}
}

func TestDSNRejects(t *testing.T) {
	for _, tc := range []struct {
		path string
		opts Options
		want string
	}{
		{"", Options{}, "path is required"},
		{":memory:", Options{}, "path is required"},
		{"x.db", Options{BusyTimeout: -time.Second}, "negative busy timeout"},
		{"x.db", Options{Pragmas: []string{"page_size(1024); DROP TABLE t"}}, "one pragma per entry"},
	} {
		_, err := DSN(tc.path, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DSN(%q, %+v) = %v, want error containing %q", tc.path, tc.opts, err, tc.want)
		}
	}
}

// With _txlock=immediate, BEGIN takes the write lock: a second writer waits
// (and here, with a tiny busy timeout, fails at BEGIN) instead of starting a
// read snapshot that would fail with SQLITE_BUSY at its first write.
func TestBeginIsImmediate(t *testing.T) {
	ctx := context.Background()
	db := openT(t, filepath.Join(t.TempDir(), "i.db"), Options{BusyTimeout: 20 * time.Millisecond})
	if _, err := db.Exec("CREATE TABLE t(x)"); err != nil {
		t.Fatal(err)
	}
	tx1, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback() }()
	tx2, err := db.BeginTx(ctx, nil)
	if err == nil {
		_ = tx2.Rollback()
		t.Fatal("second BEGIN succeeded while the first transaction is open: BEGIN is not IMMEDIATE")
	}
	if !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Fatalf("second BEGIN: %v, want SQLITE_BUSY", err)
	}
}

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ro.db")
	rw := openT(t, path, Options{})
	if _, err := rw.Exec("CREATE TABLE t(x); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatal(err)
	}

	ro := openT(t, path, Options{ReadOnly: true})
	var x int
	if err := ro.QueryRow("SELECT x FROM t").Scan(&x); err != nil || x != 42 {
		t.Fatalf("read-only SELECT = %d, %v; want 42", x, err)
	}
	tx, err := ro.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("read-only BeginTx: %v", err)
	}
	_, err = tx.Exec("INSERT INTO t VALUES (1)")
	_ = tx.Rollback()
	if err == nil {
		t.Fatal("insert on a read-only database succeeded")
	}
	if !errors.Is(Classify(err), ErrReadOnly) {
		t.Errorf("Classify(%v) does not match ErrReadOnly", err)
	}

	_, err = Open(ctx, filepath.Join(t.TempDir(), "missing.db"), Options{ReadOnly: true})
	if err == nil {
		t.Fatal("read-only Open of a missing file succeeded")
	}
}

func TestClassifyDiskFull(t *testing.T) {
	db := openT(t, filepath.Join(t.TempDir(), "full.db"), Options{MaxOpenConns: 1})
	if _, err := db.Exec("CREATE TABLE t(x BLOB)"); err != nil {
		t.Fatal(err)
	}
	// max_page_count makes SQLite report SQLITE_FULL exactly as for a full disk.
	if _, err := db.Exec("PRAGMA max_page_count = 8"); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = db.Exec("INSERT INTO t VALUES (zeroblob(2000))")
	}
	if err == nil {
		t.Fatal("no error after filling max_page_count")
	}
	cerr := Classify(err)
	if !errors.Is(cerr, ErrDiskFull) || errors.Is(cerr, ErrIO) || errors.Is(cerr, ErrReadOnly) {
		t.Fatalf("Classify(%v) = %v, want only ErrDiskFull", err, cerr)
	}
	if code, ok := Code(cerr); !ok || code&0xff != 13 {
		t.Errorf("Code = %d, %v; want SQLITE_FULL (13)", code, ok)
	}
	if !strings.HasPrefix(cerr.Error(), "disk full: ") {
		t.Errorf("message %q does not start with 'disk full: '", cerr)
	}
	if Classify(cerr) != cerr {
		t.Error("Classify wrapped an already classified error again")
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	other := errors.New("x")
	if Classify(other) != other {
		t.Error("Classify changed a non-SQLite error")
	}
}

var testMigrations = []Migration{
	{Version: 1, Name: "init", SQL: "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT NOT NULL);\nCREATE TABLE log(n INTEGER);"},
	{Version: 2, Name: "b", SQL: "CREATE TABLE b(a_id INTEGER NOT NULL REFERENCES a(id)); INSERT INTO log VALUES (2);"},
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	db := openT(t, path, Options{})

	if err := Migrate(ctx, db, testMigrations[:1]); err != nil {
		t.Fatal(err)
	}
	if v, _ := SchemaVersion(ctx, db); v != 1 {
		t.Fatalf("version = %d, want 1", v)
	}
	if err := Migrate(ctx, db, testMigrations); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, db, testMigrations); err != nil { // idempotent
		t.Fatal(err)
	}
	if v, _ := SchemaVersion(ctx, db); v != 2 {
		t.Fatalf("version = %d, want 2", v)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM log").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 2 ran %d times (%v), want once", n, err)
	}
	// foreign_keys(1) is on: the reference is enforced.
	if _, err := db.Exec("INSERT INTO b VALUES (99)"); err == nil {
		t.Error("foreign key not enforced")
	}

	// A failing migration leaves the previous version and no partial schema.
	bad := append(testMigrations, Migration{Version: 3, Name: "bad", SQL: "CREATE TABLE c(x); INSERT INTO nope VALUES (1);"})
	err := Migrate(ctx, db, bad)
	if err == nil || !strings.Contains(err.Error(), "migration 3 (bad)") {
		t.Fatalf("bad migration: %v, want error naming migration 3 (bad)", err)
	}
	if v, _ := SchemaVersion(ctx, db); v != 2 {
		t.Fatalf("version after failed migration = %d, want 2", v)
	}
	if err := db.QueryRow("SELECT count(*) FROM c").Scan(&n); err == nil {
		t.Error("table c exists after the failed migration was rolled back")
	}

	// Go migration step.
	withUp := append(testMigrations, Migration{Version: 3, Name: "up", Up: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO log VALUES (3)")
		return err
	}})
	if err := Migrate(ctx, db, withUp); err != nil {
		t.Fatal(err)
	}

	// The database is now newer than testMigrations.
	err = Migrate(ctx, db, testMigrations)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Migrate on a newer database: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "schema version 3") || !strings.Contains(err.Error(), "up to 2") {
		t.Errorf("message %q should name both versions", err)
	}
	if v, _ := SchemaVersion(ctx, db); v != 3 {
		t.Fatalf("version changed to %d by a refused migration", v)
	}
}

func TestMigrateConcurrentProcesses(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	const n = 4
	dbs := make([]*sql.DB, n)
	for i := range dbs {
		dbs[i] = openT(t, path, Options{})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, db := range dbs {
		wg.Go(func() { errs[i] = Migrate(ctx, db, testMigrations) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	var c int
	if err := dbs[0].QueryRow("SELECT count(*) FROM log").Scan(&c); err != nil || c != 1 {
		t.Fatalf("migration 2 applied %d times (%v), want once", c, err)
	}
}

func TestLoadMigrations(t *testing.T) {
	good := fstest.MapFS{
		"0002_more.sql": {Data: []byte("CREATE TABLE y(x);")},
		"0001_init.sql": {Data: []byte("CREATE TABLE x(x);")},
		"README.md":     {Data: []byte("ignored")},
	}
	ms, err := LoadMigrations(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 1 || ms[0].Name != "init" || ms[1].Name != "more" {
		t.Fatalf("LoadMigrations = %+v", ms)
	}
	db := openT(t, filepath.Join(t.TempDir(), "l.db"), Options{})
	if err := Migrate(context.Background(), db, ms); err != nil {
		t.Fatal(err)
	}

	for name, fsys := range map[string]fstest.MapFS{
		"gap":       {"0001_a.sql": {}, "0003_c.sql": {}},
		"duplicate": {"0001_a.sql": {}, "1_b.sql": {}},
		"bad name":  {"init.sql": {}},
		"zero":      {"0000_a.sql": {}},
		"empty":     {},
	} {
		if _, err := LoadMigrations(fsys); err == nil {
			t.Errorf("%s: LoadMigrations succeeded", name)
		}
	}
}
