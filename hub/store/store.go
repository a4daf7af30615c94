// Package store is the hub's SQLite store: devices, presence history, each
// device's append-only log (readings, alerts, faults; unique on device+seq),
// tokens and revocations. One writer goroutine batches every write of many
// clients into one transaction (group commit); log batches are committed to
// the intake journal (journal.go) and moved into log in large transactions.
// Readers use the pool.
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
	"slices"
	"strings"
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
	Pragmas     []string // extra pragmas in sqlitex form "name(value)"
}

type op struct {
	fn   func(w *wtx) error
	done chan error // nil: fire and forget
	// batch, when set, goes to the intake journal (fn is then the way into
	// log_intake when the journal is off); flush asks for the journal and
	// the intake to be moved into log.
	batch *logBatch
	flush bool
}

// wtx is one group-commit transaction and its prepared statements.
type wtx struct {
	tx        *sql.Tx
	insIntake *sql.Stmt
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

	ids       sync.Map // device name → int64 id
	insIntake *sql.Stmt
	insLog    *sql.Stmt

	// The intake journal (nil with SyncFull) and what it holds that is not
	// yet in log; the writer alone uses them. jOff: a write failed, so log
	// batches go through log_intake until the next flush empties the file.
	j           *journal
	jOff        bool
	pending     []logBatch
	pendingRows atomic.Int64
	jbatches    []*logBatch
	jops, other []op

	// intake counts records put in log_intake since the last move. It may
	// count too many (a rolled-back group), never too few: a failed move
	// restores it, and Open counts the table.
	intake atomic.Int64

	Commits atomic.Int64
	Rows    atomic.Int64 // records newly stored in log
	// Duplicates counts records received again (already stored), known
	// when they are moved out of the intake.
	Duplicates atomic.Int64
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
	// Checkpoint less often than SQLite's default 1000 pages: a hub commits
	// many scattered pages per group, and each checkpoint syncs.
	pragmas := append([]string{"wal_autocheckpoint(10000)"}, opts.Pragmas...)
	db, err := sqlitex.Open(ctx, path, sqlitex.Options{FullSync: opts.SyncFull, Pragmas: pragmas})
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
	if s.insIntake, err = db.PrepareContext(ctx, `INSERT INTO log_intake(device_id, seq, kind, t_ms, sensor, value, body, recv_ms)
		VALUES(?,?,?,?,?,?,?,?)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: prepare: %w", err)
	}
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM log_intake`).Scan(&n); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: intake: %w", err)
	}
	s.intake.Store(n)
	if s.insLog, err = db.PrepareContext(ctx, `INSERT INTO log(device_id, seq, kind, t_ms, sensor, value, body, recv_ms)
		VALUES(?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: prepare: %w", err)
	}
	if !opts.SyncFull {
		if err := s.openJournal(ctx, path+"-intake"); err != nil {
			db.Close()
			return nil, fmt.Errorf("store: intake journal: %w", err)
		}
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// openJournal opens the intake journal and moves what it holds into log,
// unless a flush already moved that generation.
func (s *Store) openJournal(ctx context.Context, path string) error {
	j, batches, err := openJournal(path)
	if err != nil {
		return err
	}
	var moved uint64
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = 'intake_journal_gen'`).Scan(&moved); err != nil && !errors.Is(err, sql.ErrNoRows) {
		j.close()
		return err
	}
	s.j = j
	if j.gen > moved && len(batches) > 0 {
		var n int64
		for _, b := range batches {
			n += int64(len(b.rows))
		}
		s.pending = batches
		s.pendingRows.Store(n)
		if err := s.flush(); err != nil {
			j.close()
			return err
		}
		s.log.Info("store: moved the intake journal into log", "records", n)
		return nil
	}
	if err := j.reset(max(j.gen, moved) + 1); err != nil {
		j.close()
		return err
	}
	return nil
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
func (s *Store) exec(ctx context.Context, wait bool, fn func(w *wtx) error) error {
	return s.send(ctx, wait, op{fn: fn})
}

// send queues o and, if wait, blocks until it is committed.
func (s *Store) send(ctx context.Context, wait bool, o op) error {
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

// linger is how long the writer waits for the next op of a group: clients
// woken by the previous commit are about to send their next message.
const linger = 300 * time.Microsecond

func (s *Store) writer() {
	defer s.wg.Done()
	batch := make([]op, 0, s.opts.MaxBatch)
	retain := time.NewTicker(s.opts.RetainEvery)
	defer retain.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	group := 1 // size of the last group: how many clients commit together
	moveTick := time.NewTicker(moveEvery)
	defer moveTick.Stop()
	for {
		select {
		case o, ok := <-s.ops:
			if !ok {
				s.closeWriter()
				return
			}
			batch = append(batch[:0], o)
			open := s.collect(&batch, group, wait)
			group = len(batch)
			s.runGroup(batch)
			if !open {
				s.closeWriter()
				return
			}
		case <-moveTick.C:
			if s.pendingRows.Load() > 0 || s.intake.Load() > 0 {
				_ = s.flush()
			}
		case <-retain.C:
			_ = s.flush()
			if err := s.retain(context.Background()); err != nil {
				s.log.Error("store: retention", "err", err)
			}
		case <-s.stop:
			if s.j != nil {
				s.j.close() // what it holds is moved at the next Open
			}
			return
		}
	}
}

// closeWriter moves everything into log and closes the journal.
func (s *Store) closeWriter() {
	err := s.flush() // a flush that moved anything also emptied the journal
	if s.j != nil {
		s.j.close()
	}
	if err != nil {
		s.log.Error("store: close", "err", err)
	}
}

// runGroup commits one group: log batches with one journal write (or, with
// the journal off, in the transaction), other ops in one transaction; then
// flushes when asked or when the journal holds moveAt records.
func (s *Store) runGroup(batch []op) {
	jops, other := s.jops[:0], s.other[:0]
	var flushes []op
	for _, o := range batch {
		switch {
		case o.flush:
			flushes = append(flushes, o)
		case o.batch != nil && s.j != nil && !s.jOff:
			jops = append(jops, o)
		default:
			other = append(other, o)
		}
	}
	if len(jops) > 0 {
		if err := s.journalGroup(jops); err != nil {
			s.log.Error("store: intake journal write failed; batches go through the database until the next flush", "err", err)
			s.jOff = true
			other = append(other, jops...)
		}
	}
	if len(other) > 0 {
		s.commit(other)
	}
	if len(flushes) > 0 || s.pendingRows.Load() >= moveAt || s.intake.Load() >= moveAt {
		err := s.flush()
		for _, o := range flushes {
			o.done <- err
		}
	}
	clear(jops)
	clear(other)
	s.jops, s.other = jops[:0], other[:0]
}

// journalGroup writes the group's log batches to the journal and, once
// written, acknowledges them.
func (s *Store) journalGroup(jops []op) error {
	if s.pendingRows.Load() >= maxPending {
		// Moves into log keep failing: stop holding more in memory; the
		// database path will fail the same way and say why.
		return fmt.Errorf("%d records wait to be moved into log", s.pendingRows.Load())
	}
	start := time.Now()
	bs := s.jbatches[:0]
	for _, o := range jops {
		bs = append(bs, o.batch)
	}
	err := s.j.append(bs)
	clear(bs)
	s.jbatches = bs[:0]
	if err != nil {
		return err
	}
	var rows int64
	for _, o := range jops {
		s.pending = append(s.pending, *o.batch)
		rows += int64(len(o.batch.rows))
	}
	// Counted before anyone is told: a reader that saw its append return
	// must find it pending (settle), or it would skip the move.
	s.pendingRows.Add(rows)
	for _, o := range jops {
		if o.done != nil {
			o.done <- nil
		}
	}
	s.Commits.Add(1)
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(len(jops), time.Since(start))
	}
	return nil
}

// flush moves the journal's batches and the intake into log in one
// transaction, then empties the journal.
func (s *Store) flush() error {
	if len(s.pending) == 0 && s.intake.Load() == 0 {
		if s.jOff {
			return s.resetJournal()
		}
		return nil
	}
	start := time.Now()
	intake := s.intake.Load()
	inserted, total, err := s.flushTx()
	s.Commits.Add(1)
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(1, time.Since(start))
	}
	if err != nil {
		s.ids.Clear() // ids created in the rolled-back transaction are gone
		s.intake.Store(max(s.intake.Load(), intake))
		s.log.Error("store: moving records into log failed; they stay in the intake journal", "err", err)
		return fmt.Errorf("store: flush: %w", err)
	}
	s.Rows.Add(inserted)
	s.Duplicates.Add(total - inserted)
	clear(s.pending)
	if cap(s.pending) > 4096 {
		s.pending = nil
	}
	s.pending = s.pending[:0]
	s.pendingRows.Store(0)
	return s.resetJournal()
}

// resetJournal empties the journal (its batches are in log) and turns it
// back on if a write had failed.
func (s *Store) resetJournal() error {
	if s.j == nil {
		return nil
	}
	if err := s.j.reset(s.j.gen + 1); err != nil {
		if !s.jOff {
			s.log.Error("store: intake journal cannot be emptied; batches go through the database", "err", err)
		}
		s.jOff = true
		return nil // the records are in log; only the journal is off
	}
	if s.jOff {
		s.log.Info("store: intake journal back on")
		s.jOff = false
	}
	return nil
}

func (s *Store) flushTx() (inserted, total int64, err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return 0, 0, sqlitex.Classify(err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	w := &wtx{tx: tx, insIntake: tx.Stmt(s.insIntake)}
	ins := tx.Stmt(s.insLog)
	// One device's batches together (in arrival order): its rows then go
	// to the same pages of log and its indexes one after the other.
	slices.SortStableFunc(s.pending, func(a, b logBatch) int { return strings.Compare(a.device, b.device) })
	for i := range s.pending {
		b := &s.pending[i]
		id, err := s.deviceID(w, b.device)
		if err != nil {
			return 0, 0, err
		}
		for k := range b.rows {
			r := &b.rows[k]
			res, err := ins.Exec(id, r.seq, r.kind, r.t, r.sensor, r.value, r.body, b.recv)
			if err != nil {
				return 0, 0, fmt.Errorf("insert %s record %d: %w", b.device, r.seq, sqlitex.Classify(err))
			}
			total++
			if n, _ := res.RowsAffected(); n == 0 {
				continue
			}
			inserted++
			if r.kind == protocol.KindAlert {
				var rec protocol.Record
				if err := json.Unmarshal(r.body, &rec); err != nil || rec.Alert == nil {
					return 0, 0, fmt.Errorf("alert %d: body is not an alert record: %v", r.seq, err)
				}
				if err := upsertAlert(tx, id, &rec); err != nil {
					return 0, 0, err
				}
			}
		}
	}
	// After the journal's batches: the intake only has batches that came
	// while the journal was off, later than these.
	if s.intake.Load() > 0 {
		if err := s.moveIntake(w); err != nil {
			return 0, 0, err
		}
	}
	if s.j != nil {
		if _, err := tx.Exec(`INSERT INTO store_meta(key, value) VALUES('intake_journal_gen', ?)
			ON CONFLICT(key) DO UPDATE SET value = excluded.value`, int64(s.j.gen)); err != nil {
			return 0, 0, err
		}
	}
	return inserted, total, sqlitex.Classify(tx.Commit())
}

// collect adds queued ops to batch until it holds target ops, waiting up
// to linger for each next one. It reports false when the queue was closed.
func (s *Store) collect(batch *[]op, target int, wait *time.Timer) bool {
	for len(*batch) < s.opts.MaxBatch {
		select {
		case o, ok := <-s.ops:
			if !ok {
				return false
			}
			*batch = append(*batch, o)
			continue
		default:
		}
		if len(*batch) >= target {
			return true
		}
		wait.Reset(linger)
		select {
		case o, ok := <-s.ops:
			wait.Stop()
			if !ok {
				return false
			}
			*batch = append(*batch, o)
		case <-wait.C:
			return true
		}
	}
	return true
}

// commit runs the batch in one transaction. If any op fails, the
// transaction is rolled back and every op runs again in a transaction of its
// own, so one bad op never fails the others.
func (s *Store) commit(batch []op) {
	start := time.Now()
	errs := make([]error, len(batch))
	err := s.runTx(batch, errs)
	if err != nil && len(batch) > 1 {
		s.ids.Clear() // ids created in the rolled-back transaction are gone
		for i := range batch {
			errs[i] = s.runTx(batch[i:i+1], errs[i:i+1])
		}
		err = nil
	}
	for i, o := range batch {
		if o.done == nil {
			if errs[i] != nil {
				s.log.Error("store: write failed", "err", errs[i])
			}
			continue
		}
		e := errs[i]
		if e == nil {
			e = err
		}
		o.done <- e
	}
	s.Commits.Add(1)
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(len(batch), time.Since(start))
	}
}

// runTx runs ops in one transaction; errs receives each op's error. It
// returns the first failure (op or commit), after rolling back.
func (s *Store) runTx(ops []op, errs []error) (err error) {
	tx, err := s.db.Begin()
	if err != nil {
		return s.fail(errs, fmt.Errorf("store: begin: %w", sqlitex.Classify(err)))
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	w := &wtx{tx: tx, insIntake: tx.Stmt(s.insIntake)}
	for i, o := range ops {
		if errs[i] = o.fn(w); errs[i] != nil {
			return errs[i]
		}
	}
	if err := tx.Commit(); err != nil {
		return s.fail(errs, fmt.Errorf("store: commit: %w", sqlitex.Classify(err)))
	}
	return nil
}

func (s *Store) fail(errs []error, err error) error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return err
}

// deviceID returns the row id for name, creating the device in tx if needed.
func (s *Store) deviceID(w *wtx, name string) (int64, error) {
	tx := w.tx
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
	// A rolled-back transaction clears the cache (commit), so no stale id survives.
	s.ids.Store(name, id)
	return id, nil
}

// AppendLog stores a device's records and returns once they are committed
// (to the intake: see moveIntake); the log holds each (device, seq) at most
// once; duplicates are counted when they are moved (Duplicates).
func (s *Store) AppendLog(ctx context.Context, device string, recs []protocol.Record) error {
	return s.appendLog(ctx, device, recs, true)
}

// AppendLogAsync queues the records for the next group commit and returns at
// once (QoS 0 publishes: there is no acknowledgement to hold back). Close
// drains the queue; errors are logged by the writer.
func (s *Store) AppendLogAsync(ctx context.Context, device string, recs []protocol.Record) error {
	return s.appendLog(ctx, device, recs, false)
}

// The writer moves the intake into log every moveEvery, or as soon as it
// holds moveAt records, and readers move it first (settle).
const (
	moveEvery = 250 * time.Millisecond
	moveAt    = 8192
)

// maxPending bounds what the journal holds (and the writer keeps in memory)
// when moves into log fail. A variable for tests.
var maxPending int64 = 8 * moveAt

func (s *Store) appendLog(ctx context.Context, device string, recs []protocol.Record, wait bool) error {
	bt := &logBatch{device: device, recv: s.opts.Now().UnixMilli()}
	// Encode outside the writer: it is the one serial part.
	rows := make([]logRow, len(recs))
	buf := make([]byte, 0, 160*len(recs)) // the bodies of plain readings
	for i := range recs {
		r := &recs[i]
		start := len(buf)
		var body []byte
		var ok bool
		if buf, ok = protocol.AppendRecordJSON(buf, r); ok {
			body = buf[start:len(buf):len(buf)]
		} else {
			var err error
			if body, err = json.Marshal(r); err != nil {
				return fmt.Errorf("store: encode record %d: %w", r.Seq, err)
			}
		}
		rows[i] = logRow{seq: int64(r.Seq), kind: r.Kind, sensor: r.Sensor, body: body}
		switch {
		case r.Value != nil:
			rows[i].value = *r.Value
		case r.Alert != nil:
			rows[i].value = r.Alert.Value
		}
		if r.Clock != protocol.ClockMono {
			rows[i].t = r.Time // no wall time: never pretend
		}
	}
	bt.rows = rows
	// The writer puts bt in the intake journal; fn is its way into
	// log_intake when the journal is off.
	err := s.send(ctx, wait, op{batch: bt, fn: func(w *wtx) error {
		id, err := s.deviceID(w, device)
		if err != nil {
			return err
		}
		for i := range rows {
			r := &rows[i]
			if _, err := w.insIntake.Exec(id, r.seq, r.kind, r.t, r.sensor, r.value, r.body, bt.recv); err != nil {
				return fmt.Errorf("insert record %d: %w", r.seq, sqlitex.Classify(err))
			}
		}
		s.intake.Add(int64(len(rows))) // a hint for the writer: when to move
		return nil
	}})
	if err != nil {
		return fmt.Errorf("store: append %s: %w", device, err)
	}
	return nil
}

// Counts returns how many log records were newly stored and how many were
// duplicates, after moving the intake.
func (s *Store) Counts(ctx context.Context) (stored, duplicates int64, err error) {
	err = s.settle(ctx)
	return s.Rows.Load(), s.Duplicates.Load(), err
}

// settle moves the intake journal and the intake into log before a read of
// log, so that a reader sees every committed record.
func (s *Store) settle(ctx context.Context) error {
	if s.pendingRows.Load() == 0 && s.intake.Load() == 0 {
		return nil
	}
	if err := s.send(ctx, true, op{flush: true}); err != nil {
		return fmt.Errorf("store: move intake: %w", err)
	}
	return nil
}

// moveIntake moves the intake's records into log in one statement (large
// batches: each device's index pages are written once per move, not once
// per group commit), skipping records already stored; alerts go one by
// one, in arrival order, so that only a new alert record changes the
// alerts table.
func (s *Store) moveIntake(w *wtx) error {
	tx := w.tx
	var top int64
	if err := tx.QueryRow(`SELECT ifnull(max(rowid), 0) FROM log_intake`).Scan(&top); err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	if top == 0 {
		s.intake.Store(0)
		return nil
	}
	var inserted int64
	alerts, err := tx.Query(`SELECT device_id, seq, kind, t_ms, sensor, value, body, recv_ms FROM log_intake WHERE rowid <= ? AND kind = 'alert' ORDER BY rowid`, top)
	if err != nil {
		return fmt.Errorf("intake alerts: %w", err)
	}
	type alertRow struct {
		id, seq, t, recv int64
		kind, sensor     string
		value            sql.NullFloat64
		body             string
	}
	var as []alertRow
	for alerts.Next() {
		var a alertRow
		if err := alerts.Scan(&a.id, &a.seq, &a.kind, &a.t, &a.sensor, &a.value, &a.body, &a.recv); err != nil {
			_ = alerts.Close()
			return fmt.Errorf("intake alerts: %w", err)
		}
		as = append(as, a)
	}
	if err := errors.Join(alerts.Err(), alerts.Close()); err != nil {
		return fmt.Errorf("intake alerts: %w", err)
	}
	for _, a := range as {
		res, err := tx.Exec(`INSERT INTO log(device_id, seq, kind, t_ms, sensor, value, body, recv_ms) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`,
			a.id, a.seq, a.kind, a.t, a.sensor, a.value, a.body, a.recv)
		if err != nil {
			return fmt.Errorf("move alert %d: %w", a.seq, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		inserted++
		var r protocol.Record
		if err := json.Unmarshal([]byte(a.body), &r); err != nil || r.Alert == nil {
			return fmt.Errorf("move alert %d: stored body is not an alert record: %v", a.seq, err)
		}
		if err := upsertAlert(tx, a.id, &r); err != nil {
			return err
		}
	}
	res, err := tx.Exec(`INSERT INTO log(device_id, seq, kind, t_ms, sensor, value, body, recv_ms)
		SELECT device_id, seq, kind, t_ms, sensor, value, body, recv_ms FROM log_intake WHERE rowid <= ? AND kind <> 'alert' ORDER BY rowid
		ON CONFLICT DO NOTHING`, top)
	if err != nil {
		return fmt.Errorf("move intake: %w", err)
	}
	n, _ := res.RowsAffected()
	inserted += n
	res, err = tx.Exec(`DELETE FROM log_intake WHERE rowid <= ?`, top)
	if err != nil {
		return fmt.Errorf("clear intake: %w", err)
	}
	moved, _ := res.RowsAffected()
	// Counted before the commit: if it fails, the intake keeps its rows
	// and the next move counts them again.
	s.intake.Store(0)
	s.Rows.Add(inserted)
	s.Duplicates.Add(moved - inserted)
	return nil
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
