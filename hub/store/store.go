// Package store is the hub's SQLite store: devices, presence history, each
// device's append-only log (readings, alerts, faults; unique on device+seq),
// tokens and revocations. One writer goroutine batches every write of many
// clients into one transaction (group commit); readers use the pool.
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/sqlitex"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrClosed is returned for writes after Close began.
var ErrClosed = errors.New("store: closed")

// ErrNotFound is returned when a device or token does not exist.
var ErrNotFound = errors.New("store: not found")

// Options tune the store.
type Options struct {
	MaxBatch    int           // ops per transaction; default 1024
	RetainAge   time.Duration // delete log records received longer ago; 0 keeps forever
	RetainRows  int64         // keep at most this many log records (oldest received go first); 0 = no limit
	RetainEvery time.Duration // how often retention runs; default 1 min
	Logger      *slog.Logger
	Now         func() time.Time
	SyncFull    bool // synchronous=FULL instead of NORMAL
	OnCommit    func(ops int, d time.Duration)
}

type op struct {
	fn   func(tx *sql.Tx) error
	done chan error // nil: fire and forget
}

// Store is safe for concurrent use.
type Store struct {
	db   *sql.DB
	opts Options
	log  *slog.Logger

	mu     sync.RWMutex // guards closed and sends on ops
	closed bool
	ops    chan op
	wg     sync.WaitGroup
	stop   chan struct{}

	ids sync.Map // device name → int64 id

	Commits atomic.Int64
	Rows    atomic.Int64
}

// Open opens (creating and migrating) the store at path.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.RetainEvery <= 0 {
		opts.RetainEvery = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := sqlitex.Open(ctx, path, sqlitex.Options{FullSync: opts.SyncFull})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	ms, err := sqlitex.LoadMigrations(sub)
	if err == nil {
		err = sqlitex.Migrate(ctx, db, ms)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{db: db, opts: opts, log: opts.Logger, ops: make(chan op, 4096), stop: make(chan struct{})}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// DB exposes the database for read-only queries of sibling packages.
func (s *Store) DB() *sql.DB { return s.db }

// Close drains every queued write, then closes the database.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ops)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		close(s.stop)
		<-done
	}
	return s.db.Close()
}

// exec queues fn and, if wait, blocks until its transaction committed.
func (s *Store) exec(ctx context.Context, wait bool, fn func(tx *sql.Tx) error) error {
	o := op{fn: fn}
	if wait {
		o.done = make(chan error, 1)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	if !wait {
		return nil
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]op, 0, s.opts.MaxBatch)
	retain := time.NewTicker(s.opts.RetainEvery)
	defer retain.Stop()
	for {
		select {
		case o, ok := <-s.ops:
			if !ok {
				return
			}
			batch = append(batch[:0], o)
		drain:
			for len(batch) < s.opts.MaxBatch {
				select {
				case o, ok := <-s.ops:
					if !ok {
						break drain
					}
					batch = append(batch, o)
				default:
					break drain
				}
			}
			s.commit(batch)
		case <-retain.C:
			if err := s.Retain(context.Background()); err != nil {
				s.log.Error("store: retention", "err", err)
			}
		case <-s.stop:
			return
		}
	}
}

// commit runs the batch in one transaction, each op in its own savepoint so
// one failing op does not fail the others.
func (s *Store) commit(batch []op) {
	start := time.Now()
	errs := make([]error, len(batch))
	tx, err := s.db.Begin()
	if err == nil {
		for i, o := range batch {
			if len(batch) == 1 {
				errs[i] = o.fn(tx)
				continue
			}
			if _, err = tx.Exec("SAVEPOINT op"); err != nil {
				break
			}
			if errs[i] = o.fn(tx); errs[i] != nil {
				if _, err = tx.Exec("ROLLBACK TO op"); err != nil {
					break
				}
			}
			if _, err = tx.Exec("RELEASE op"); err != nil {
				break
			}
		}
		if err == nil && len(batch) == 1 && errs[0] != nil {
			err = errs[0]
		}
		if err == nil {
			err = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
	}
	if err != nil {
		err = fmt.Errorf("store: commit: %w", err)
		s.log.Error("store: batch failed", "ops", len(batch), "err", err)
	}
	for i, o := range batch {
		if o.done == nil {
			continue
		}
		e := err
		if e == nil {
			e = errs[i]
		}
		o.done <- e
	}
	s.Commits.Add(1)
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(len(batch), time.Since(start))
	}
}

// deviceID returns the row id for name, creating the device in tx if needed.
func (s *Store) deviceID(tx *sql.Tx, name string) (int64, error) {
	if v, ok := s.ids.Load(name); ok {
		return v.(int64), nil
	}
	var id int64
	err := tx.QueryRow(`SELECT id FROM devices WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		err = tx.QueryRow(`INSERT INTO devices(name, created_ms) VALUES(?, ?) RETURNING id`, name, s.opts.Now().UnixMilli()).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("device %q: %w", name, err)
	}
	// Cached only after commit would be stricter; a rolled-back insert is
	// re-created by the next op because ids are looked up again on failure.
	s.ids.Store(name, id)
	return id, nil
}

// AppendLog stores a device's records idempotently on (device, seq) and
// returns once they are committed. It reports how many were new.
func (s *Store) AppendLog(ctx context.Context, device string, recs []protocol.Record) (int, error) {
	recv := s.opts.Now().UnixMilli()
	var inserted int
	err := s.exec(ctx, true, func(tx *sql.Tx) error {
		id, err := s.deviceID(tx, device)
		if err != nil {
			s.ids.Delete(device)
			return err
		}
		inserted = 0
		var maxSeq uint64
		for i := range recs {
			r := &recs[i]
			body, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode record %d: %w", r.Seq, err)
			}
			var value any
			if r.Value != nil {
				value = *r.Value
			} else if r.Alert != nil {
				value = r.Alert.Value
			}
			t := r.Time
			if r.Clock == protocol.ClockMono {
				t = 0 // no wall time: never pretend
			}
			res, err := tx.Exec(`INSERT INTO log(device_id, seq, kind, t_ms, sensor, value, body, recv_ms)
				VALUES(?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`, id, int64(r.Seq), r.Kind, t, r.Sensor, value, body, recv)
			if err != nil {
				return fmt.Errorf("insert record %d: %w", r.Seq, err)
			}
			n, _ := res.RowsAffected()
			if n == 0 {
				continue
			}
			inserted++
			maxSeq = max(maxSeq, r.Seq)
			if r.Kind == protocol.KindAlert {
				if err := upsertAlert(tx, id, r); err != nil {
					return err
				}
			}
		}
		if maxSeq > 0 {
			if _, err := tx.Exec(`UPDATE devices SET last_seq = max(last_seq, ?) WHERE id = ?`, int64(maxSeq), id); err != nil {
				return fmt.Errorf("update last_seq: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: append %s: %w", device, err)
	}
	s.Rows.Add(int64(inserted))
	return inserted, nil
}

func upsertAlert(tx *sql.Tx, id int64, r *protocol.Record) error {
	a := r.Alert
	since := a.Since
	if since == 0 {
		since = r.Time
	}
	var err error
	if a.State == protocol.AlertRaised {
		_, err = tx.Exec(`INSERT INTO alerts(device_id, rule, sensor, state, severity, value, message, raised_ms, seq)
			VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`, id, a.Rule, r.Sensor, "active", a.Severity, a.Value, a.Message, since, int64(r.Seq))
	} else {
		_, err = tx.Exec(`UPDATE alerts SET state = 'cleared', cleared_ms = ? WHERE device_id = ? AND rule = ? AND sensor = ? AND state = 'active'`,
			r.Time, id, a.Rule, r.Sensor)
	}
	if err != nil {
		return fmt.Errorf("alert %s: %w", a.Rule, err)
	}
	return nil
}
