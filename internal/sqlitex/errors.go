package sqlitex

import (
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Storage failure kinds. Classify wraps SQLite errors so that
// errors.Is(err, ErrDiskFull) (or ErrReadOnly, ErrIO) reports them.
var (
	// ErrDiskFull: SQLITE_FULL, the file system (or the database's
	// max_page_count) has no room for the write. The transaction was rolled
	// back; data committed earlier is intact.
	ErrDiskFull = errors.New("disk full")
	// ErrReadOnly: SQLITE_READONLY and its extended codes, e.g. the file or
	// its directory is not writable, or the file system is mounted read-only.
	ErrReadOnly = errors.New("database is read-only")
	// ErrIO: SQLITE_IOERR and its extended codes, the operating system
	// reported an I/O error (a failing SD card, a vanished device, and on
	// some paths an exhausted disk, e.g. when growing the -shm file).
	ErrIO = errors.New("disk I/O error")
)

// Code returns the SQLite result code (primary and extended, e.g. 1546 for
// SQLITE_IOERR_SHMSIZE) carried by err, and whether err carries one.
func Code(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

// Classify returns err wrapped with ErrDiskFull, ErrReadOnly or ErrIO when it
// is (or wraps) a SQLite error of that kind; otherwise it returns err
// unchanged. The original error stays reachable with errors.Is and errors.As.
// Classify(nil) is nil, and classifying twice does not wrap twice.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrDiskFull) || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrIO) {
		return err
	}
	code, ok := Code(err)
	if !ok {
		return err
	}
	var kind error
	switch code & 0xff { // primary result code
	case sqlite3.SQLITE_FULL:
		kind = ErrDiskFull
	case sqlite3.SQLITE_READONLY:
		kind = ErrReadOnly
	case sqlite3.SQLITE_IOERR:
		kind = ErrIO
	default:
		return err
	}
	return &storageError{kind: kind, err: err}
}

// storageError is a SQLite error with its storage failure kind.
type storageError struct {
	kind error
	err  error
}

func (e *storageError) Error() string   { return e.kind.Error() + ": " + e.err.Error() }
func (e *storageError) Unwrap() []error { return []error{e.kind, e.err} }
