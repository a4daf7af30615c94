package outbox

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/sqlitex"
)

// Defaults for zero Options fields.
const (
	DefaultFlushInterval = time.Second
	DefaultFlushRecords  = 256
	DefaultMaxRecords    = 1_000_000
	DefaultMaxBytes      = 64 << 20
)

// Storage tuning (see TestBytesPerReading for the measurements behind it).
const (
	// pageSize: a commit rewrites the partly filled last leaf and the pages
	// above it; small pages keep that rewrite small when a commit holds few
	// records (1 s of readings). About 33 readings fit in a 1 KiB page.
	// Measured against 4 KiB pages: 1.4k vs 2.2k bytes written per reading
	// at 4 readings per commit, 89 vs 130 at 256.
	pageSize = 1024
	// walAutocheckpoint (pages): copy the WAL into the database every
	// 4 MiB of WAL. The last leaf, rewritten by each commit, is copied once
	// per checkpoint, not once per commit.
	walAutocheckpoint = 4096
	// journalSizeLimit truncates the WAL back to this size after a
	// checkpoint, so that a burst does not leave a large file behind.
	journalSizeLimit = 8 << 20
)

// Errors callers branch on.
var (
	// ErrClosed is returned by calls on a closed Outbox.
	ErrClosed = errors.New("outbox: closed")
	// ErrDiskFull is wrapped by errors of commits that failed because the
	// disk (or file system) is full.
	ErrDiskFull = sqlitex.ErrDiskFull
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Options configure an Outbox. Zero fields take the defaults.
type Options struct {
	// MaxRecords bounds the committed, unacknowledged records; beyond it the
	// oldest are dropped. 0 means DefaultMaxRecords, < 0 no limit.
	MaxRecords int
	// MaxBytes bounds Stats.Bytes (the estimated stored size); beyond it the
	// oldest records are dropped. 0 means DefaultMaxBytes, < 0 no limit.
	MaxBytes int64
	// MaxAge drops records stored longer ago than this (by Clock, at each
	// commit). 0 or < 0: no age limit.
	MaxAge time.Duration

	// FlushInterval is the longest a record waits in memory before it is
	// committed. 0 means DefaultFlushInterval.
	FlushInterval time.Duration
	// FlushRecords commits the buffer as soon as this many records wait.
	// 0 means DefaultFlushRecords.
	FlushRecords int

	// Clock returns the current time, used for the stored time of each record
	// (MaxAge, Stats.OldestAge); nil means time.Now.
	Clock func() time.Time

	// DropNotice, if not nil, builds the record that reports records dropped
	// to stay within the bounds (e.g. a fault "seqs a..b dropped"). The
	// outbox appends it after a commit that dropped records (and at Open if
	// a drop is still unreported) and marks the range reported in the
	// transaction that commits it. It must return a record that passes
	// protocol.Record.Validate once it has a seq (Open checks one). It is
	// called with the outbox locked and must not call the Outbox.
	DropNotice func(DropRange) protocol.Record

	// tune adjusts the SQLite options; tests use it to compare settings.
	tune func(*sqlitex.Options)
}

// DropRange describes records deleted unacknowledged to stay within the
// bounds. Some of them may have been published already.
type DropRange struct {
	First, Last uint64 // first and last dropped seq
	Count       uint64 // records dropped in First..Last (records acknowledged in between are not counted)
	Reasons     string // bounds that were exceeded, comma-separated: max_records, max_bytes, max_age
}

// Stats is a snapshot of the outbox's state, for heartbeats and metrics.
type Stats struct {
	Depth        int64         // committed records not yet acknowledged
	Bytes        int64         // estimated stored size of those records: 32 bytes each plus the JSON body of alerts, faults and mono-clock records
	Buffered     int           // records appended but not yet committed
	LastSeq      uint64        // last seq assigned (to a buffered or committed record)
	CommittedSeq uint64        // last seq committed
	OldestSeq    uint64        // seq of the oldest committed record; 0 when empty
	OldestAge    time.Duration // how long ago the oldest committed record was stored
	Dropped      uint64        // records ever dropped by the bounds (persisted)
	Unreported   DropRange     // dropped and not yet reported by a DropNotice record; Count 0 when none
	FlushErr     error         // error of the last commit attempt, nil once one succeeds
}

// state is the outbox's view of the database. Only a writer (holding wmu)
// changes it, and it does so under mu, after its transaction committed.
type state struct {
	committed   uint64 // last committed seq
	metaSeq     uint64 // meta.last_seq
	depth       int64
	bytes       int64
	oldestSeq   uint64
	oldestAdded int64
	dropped     uint64
	un          DropRange
}

// Outbox is the durable, bounded outbox. Its methods are safe for
// concurrent use.
type Outbox struct {
	db   *sql.DB
	opts Options // defaults resolved

	// wmu serialises the database writes (commits, acks, drops) and is
	// taken before mu.
	wmu    sync.Mutex
	series map[seriesKey]int64 // the series table; guarded by wmu

	mu           sync.Mutex
	st           state
	buf          []row
	spare        []row  // a drained buffer, reused
	lastSeq      uint64 // last seq assigned
	flushErr     error
	noticeQueued bool
	closed       bool
	commitCh     chan struct{} // closed and replaced at each commit of new records

	kick chan struct{} // the buffer received its first record
	quit chan struct{}
	done chan struct{}
}

// Open opens (or creates) the outbox database at path, recovers the sequence
// high-water mark and counters, applies the bounds, and starts the
// goroutine that commits the buffer every FlushInterval. Close stops it.
func Open(ctx context.Context, path string, opts Options) (*Outbox, error) {
	if err := resolve(&opts); err != nil {
		return nil, err
	}
	so := sqlitex.Options{
		FullSync:     true, // see the package comment: a committed seq must survive a power cut
		MaxOpenConns: 4,
		Pragmas: []string{
			fmt.Sprintf("page_size(%d)", pageSize),
			fmt.Sprintf("wal_autocheckpoint(%d)", walAutocheckpoint),
			fmt.Sprintf("journal_size_limit(%d)", journalSizeLimit),
		},
	}
	if opts.tune != nil {
		opts.tune(&so)
	}
	db, err := sqlitex.Open(ctx, path, so)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &Outbox{
		db:       db,
		opts:     opts,
		commitCh: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := o.load(ctx); err != nil {
		_ = db.Close() // the load error is the one to report
		return nil, err
	}
	go o.run()
	return o, nil
}

func resolve(o *Options) error {
	if o.MaxRecords == 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.FlushRecords == 0 {
		o.FlushRecords = DefaultFlushRecords
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.FlushInterval < 0 || o.FlushRecords < 0 {
		return fmt.Errorf("outbox: negative FlushInterval (%v) or FlushRecords (%d)", o.FlushInterval, o.FlushRecords)
	}
	if o.DropNotice != nil {
		rec := o.DropNotice(DropRange{First: 1, Last: 2, Count: 2, Reasons: "max_records"})
		rec.Seq = 0
		if _, err := encode(&rec); err != nil {
			return fmt.Errorf("outbox: Options.DropNotice returns an invalid record: %w", err)
		}
	}
	return nil
}

// load migrates the schema, reads the persisted state and applies the bounds.
func (o *Outbox) load(ctx context.Context) error {
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return fmt.Errorf("outbox: migrations: %w", err)
	}
	ms, err := sqlitex.LoadMigrations(sub)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if err := sqlitex.Migrate(ctx, o.db, ms); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	var (
		s       state
		maxSeq  int64
		reasons string
	)
	err = o.db.QueryRowContext(ctx, `SELECT last_seq, dropped, un_first, un_last, un_count, un_reasons FROM meta WHERE id = 1`).
		Scan(&s.metaSeq, &s.dropped, &s.un.First, &s.un.Last, &s.un.Count, &reasons)
	if err != nil {
		return fmt.Errorf("outbox: read meta: %w", sqlitex.Classify(err))
	}
	s.un.Reasons = reasons
	if err := o.loadSeries(ctx); err != nil {
		return err
	}
	// A full scan: at boot only, O(depth).
	err = o.db.QueryRowContext(ctx, `SELECT ifnull(max(seq), 0), count(*), ifnull(sum(`+sizeSQL+`), 0) FROM records`).
		Scan(&maxSeq, &s.depth, &s.bytes)
	if err != nil {
		return fmt.Errorf("outbox: read records: %w", sqlitex.Classify(err))
	}
	s.committed = max(s.metaSeq, uint64(maxSeq))
	if err := o.readOldest(ctx, o.db, &s); err != nil {
		return err
	}
	o.st = s
	o.lastSeq = s.committed

	// Apply the bounds (they may be smaller than last time, or records aged).
	o.wmu.Lock()
	defer o.wmu.Unlock()
	return o.commitLocked(ctx)
}

// loadSeries reads the series table into o.series.
func (o *Outbox) loadSeries(ctx context.Context) error {
	rows, err := o.db.QueryContext(ctx, `SELECT id, sensor, unit FROM series`)
	if err != nil {
		return fmt.Errorf("outbox: read series: %w", sqlitex.Classify(err))
	}
	defer func() { _ = rows.Close() }() // rows.Err below reports read errors
	o.series = make(map[seriesKey]int64)
	for rows.Next() {
		var id int64
		var k seriesKey
		if err := rows.Scan(&id, &k.sensor, &k.unit); err != nil {
			return fmt.Errorf("outbox: read series: %w", err)
		}
		o.series[k] = id
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("outbox: read series: %w", sqlitex.Classify(err))
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// readOldest sets s.oldestSeq and s.oldestAdded from the database.
func (o *Outbox) readOldest(ctx context.Context, q queryer, s *state) error {
	var seq, added int64
	err := q.QueryRowContext(ctx, `SELECT seq, t + lag FROM records ORDER BY seq LIMIT 1`).Scan(&seq, &added)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		s.oldestSeq, s.oldestAdded = 0, 0
	case err != nil:
		return fmt.Errorf("outbox: read oldest record: %w", sqlitex.Classify(err))
	default:
		s.oldestSeq, s.oldestAdded = uint64(seq), added
	}
	return nil
}

// run commits the buffer FlushInterval after it received its first record.
func (o *Outbox) run() {
	defer close(o.done)
	timer := time.NewTimer(o.opts.FlushInterval)
	timer.Stop()
	for {
		select {
		case <-o.quit:
			return
		case <-o.kick:
		}
		for {
			timer.Reset(o.opts.FlushInterval)
			select {
			case <-o.quit:
				timer.Stop()
				return
			case <-timer.C:
			}
			// A failure stays in o.flushErr: Append, Flush and Stats report it.
			_ = o.flush(context.Background())
			o.mu.Lock()
			n := len(o.buf)
			o.mu.Unlock()
			if n == 0 {
				break
			}
		}
	}
}

// Append validates rec (whose Seq must be 0), assigns it the next seq and
// buffers it; it is committed within FlushInterval (see the package comment
// for what a crash can lose). If FlushRecords records are already waiting,
// or the last commit failed, Append first commits the buffer, and returns
// that error, without accepting rec, if it fails (e.g. ErrDiskFull).
func (o *Outbox) Append(ctx context.Context, rec protocol.Record) (uint64, error) {
	r, err := encode(&rec)
	if err != nil {
		return 0, fmt.Errorf("outbox: append: %w", err)
	}
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return 0, ErrClosed
		}
		if len(o.buf) < o.opts.FlushRecords && o.flushErr == nil {
			break // holding mu
		}
		o.mu.Unlock()
		if err := o.flush(ctx); err != nil {
			return 0, err
		}
	}
	seq := o.pushLocked(r)
	o.mu.Unlock()
	return seq, nil
}

// pushLocked assigns r the next seq and buffers it. o.mu is held.
func (o *Outbox) pushLocked(r row) uint64 {
	o.lastSeq++
	r.seq = o.lastSeq
	r.added = o.opts.Clock().UnixMilli()
	if o.buf == nil {
		o.buf, o.spare = o.spare, nil
	}
	o.buf = append(o.buf, r)
	if len(o.buf) == 1 {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
	return r.seq
}

// AppendSync appends rec and commits it before returning, for records that
// must be durable now (alerts). If the record was accepted but the commit
// failed, it returns its seq with the error: the record stays buffered and is
// retried, but is not durable yet.
func (o *Outbox) AppendSync(ctx context.Context, rec protocol.Record) (uint64, error) {
	seq, err := o.Append(ctx, rec)
	if err != nil {
		return 0, err
	}
	return seq, o.flush(ctx)
}

// Flush commits every record appended before the call. When it returns nil,
// those records are durable and visible to the read methods.
func (o *Outbox) Flush(ctx context.Context) error {
	if o.isClosed() {
		return ErrClosed
	}
	return o.flush(ctx)
}

func (o *Outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// flush commits the buffer. A failed batch goes back to the front of the
// buffer before wmu is released, so a later flush retries it in order.
func (o *Outbox) flush(ctx context.Context) error {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	return o.commitLocked(ctx)
}

// commitLocked commits the buffer (possibly empty) and applies the bounds in
// one transaction. o.wmu is held.
func (o *Outbox) commitLocked(ctx context.Context) error {
	o.mu.Lock()
	batch := o.buf
	o.buf = nil
	s := o.st
	o.mu.Unlock()

	now := o.opts.Clock().UnixMilli()
	if len(batch) == 0 && !o.overBounds(&s, now) {
		o.mu.Lock()
		o.flushErr = nil
		o.maybeQueueNoticeLocked()
		o.mu.Unlock()
		return nil
	}
	err := o.writeBatch(ctx, batch, &s, now)

	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		err = sqlitex.Classify(err)
		if errors.Is(err, ErrDiskFull) {
			err = fmt.Errorf("outbox: disk full: %d records wait in memory, stored records are intact: %w", len(batch), err)
		} else {
			err = fmt.Errorf("outbox: commit %d records: %w", len(batch), err)
		}
		o.buf = append(batch, o.buf...)
		o.flushErr = err
		return err
	}
	o.flushErr = nil
	newRecords := s.committed != o.st.committed
	for i := range batch {
		if batch[i].notice {
			o.noticeQueued = false
		}
	}
	o.st = s
	if newRecords {
		close(o.commitCh)
		o.commitCh = make(chan struct{})
	}
	if o.spare == nil {
		clear(batch)
		o.spare = batch[:0]
	}
	o.maybeQueueNoticeLocked()
	return nil
}

// maybeQueueNoticeLocked appends the DropNotice record for the unreported
// drops, if any and not queued yet. o.mu is held.
func (o *Outbox) maybeQueueNoticeLocked() {
	un := o.st.un
	if un.Count == 0 || o.opts.DropNotice == nil || o.noticeQueued || o.closed {
		return
	}
	rec := o.opts.DropNotice(un)
	rec.Seq = 0
	r, err := encode(&rec)
	if err != nil {
		// Open checked that DropNotice builds valid records; if this one is
		// not, the range stays in Stats.Unreported.
		return
	}
	r.notice = true
	o.noticeQueued = true
	o.pushLocked(r)
}

// overBounds reports whether s exceeds a bound at time now (unix ms).
func (o *Outbox) overBounds(s *state, now int64) bool {
	return o.dropReason(s.depth, s.bytes, s.oldestAdded, now) != ""
}

// dropReason tells why the oldest record (stored at added) must be dropped
// when the outbox holds depth records of bytes; "" if it may stay.
func (o *Outbox) dropReason(depth, bytes, added, now int64) string {
	switch {
	case depth == 0:
		return ""
	case o.opts.MaxRecords > 0 && depth > int64(o.opts.MaxRecords):
		return "max_records"
	case o.opts.MaxBytes > 0 && bytes > o.opts.MaxBytes:
		return "max_bytes"
	case o.opts.MaxAge > 0 && added < now-o.opts.MaxAge.Milliseconds():
		return "max_age"
	}
	return ""
}

// writeBatch inserts batch, applies the bounds and updates meta in one
// transaction, updating s to match.
func (o *Outbox) writeBatch(ctx context.Context, batch []row, s *state, now int64) (err error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the first error is the one to report
		}
	}()
	metaDirty := false
	var newSeries map[seriesKey]int64 // added by this transaction
	if len(batch) > 0 {
		stmt, err := tx.PrepareContext(ctx, insertSQL)
		if err != nil {
			return fmt.Errorf("prepare insert: %w", err)
		}
		for i := range batch {
			r := &batch[i]
			id, ok := o.series[r.series]
			if !ok {
				if id, ok = newSeries[r.series]; !ok {
					err := tx.QueryRowContext(ctx, `INSERT INTO series (sensor, unit) VALUES (?, ?) RETURNING id`, r.series.sensor, r.series.unit).Scan(&id)
					if err != nil {
						_ = stmt.Close()
						return fmt.Errorf("add series %q %q: %w", r.series.sensor, r.series.unit, err)
					}
					if newSeries == nil {
						newSeries = make(map[seriesKey]int64)
					}
					newSeries[r.series] = id
				}
			}
			if _, err := stmt.ExecContext(ctx, r.args(id)...); err != nil {
				_ = stmt.Close()
				return fmt.Errorf("insert seq %d: %w", r.seq, err)
			}
			s.depth++
			s.bytes += r.size()
			if s.oldestSeq == 0 {
				s.oldestSeq, s.oldestAdded = r.seq, r.added
			}
			if r.notice {
				// The notice reports the whole unreported range: no drop
				// can happen between queueing it and committing it without
				// committing it too.
				s.un = DropRange{}
				metaDirty = true
			}
		}
		if err := stmt.Close(); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		s.committed = batch[len(batch)-1].seq
	}
	dropped, err := o.dropOldest(ctx, tx, s, now)
	if err != nil {
		return err
	}
	if dropped || metaDirty {
		if err := writeMeta(ctx, tx, s); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for k, id := range newSeries {
		o.series[k] = id
	}
	return nil
}

// dropOldest deletes the oldest records while a bound is exceeded and
// records the drop in s. It reports whether it deleted any.
func (o *Outbox) dropOldest(ctx context.Context, tx *sql.Tx, s *state, now int64) (bool, error) {
	if !o.overBounds(s, now) {
		return false, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, `+sizeSQL+`, t + lag FROM records ORDER BY seq`)
	if err != nil {
		return false, fmt.Errorf("select oldest: %w", err)
	}
	var (
		d       DropRange
		reasons []string
	)
	for rows.Next() {
		var seq, size, added int64
		if err := rows.Scan(&seq, &size, &added); err != nil {
			_ = rows.Close()
			return false, fmt.Errorf("select oldest: %w", err)
		}
		why := o.dropReason(s.depth, s.bytes, added, now)
		if why == "" {
			break
		}
		if d.Count == 0 {
			d.First = uint64(seq)
		}
		d.Last = uint64(seq)
		d.Count++
		s.depth--
		s.bytes -= size
		if !slices.Contains(reasons, why) {
			reasons = append(reasons, why)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return false, fmt.Errorf("select oldest: %w", err)
	}
	if d.Count == 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE seq <= ?`, int64(d.Last)); err != nil {
		return false, fmt.Errorf("drop seqs %d..%d: %w", d.First, d.Last, err)
	}
	if err := o.readOldest(ctx, tx, s); err != nil {
		return false, err
	}
	s.dropped += d.Count
	if s.un.Count == 0 {
		s.un.First = d.First
	}
	s.un.Last = d.Last
	s.un.Count += d.Count
	s.un.Reasons = mergeReasons(s.un.Reasons, reasons)
	return true, nil
}

func mergeReasons(have string, add []string) string {
	var rs []string
	if have != "" {
		rs = strings.Split(have, ",")
	}
	for _, r := range add {
		if !slices.Contains(rs, r) {
			rs = append(rs, r)
		}
	}
	return strings.Join(rs, ",")
}

// writeMeta stores s's counters and raises meta.last_seq to the last
// committed seq. Every transaction that deletes records calls it.
func writeMeta(ctx context.Context, tx *sql.Tx, s *state) error {
	s.metaSeq = max(s.metaSeq, s.committed)
	_, err := tx.ExecContext(ctx, `UPDATE meta SET last_seq = ?, dropped = ?, un_first = ?, un_last = ?, un_count = ?, un_reasons = ? WHERE id = 1`,
		int64(s.metaSeq), int64(s.dropped), int64(s.un.First), int64(s.un.Last), int64(s.un.Count), s.un.Reasons)
	if err != nil {
		return fmt.Errorf("update meta: %w", err)
	}
	return nil
}

// Ack deletes the records with the given seqs, in one transaction, once the
// hub acknowledged them (PUBACK). Seqs already deleted (acknowledged before,
// or dropped) are ignored; a seq that was not committed yet is an error.
func (o *Outbox) Ack(ctx context.Context, seqs ...uint64) (err error) {
	if len(seqs) == 0 {
		return nil
	}
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.mu.Lock()
	s, closed := o.st, o.closed
	o.mu.Unlock()
	if closed {
		return ErrClosed
	}
	for _, seq := range seqs {
		if seq == 0 || seq > s.committed {
			return fmt.Errorf("outbox: ack seq %d: not a committed seq (last committed is %d)", seq, s.committed)
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("outbox: ack %d records: %w", len(seqs), sqlitex.Classify(err))
		}
	}()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the first error is the one to report
		}
	}()
	stmt, err := tx.PrepareContext(ctx, `DELETE FROM records WHERE seq = ? RETURNING `+sizeSQL)
	if err != nil {
		return fmt.Errorf("prepare delete: %w", err)
	}
	deleted := 0
	for _, seq := range seqs {
		var size int64
		err := stmt.QueryRowContext(ctx, int64(seq)).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			_ = stmt.Close()
			return fmt.Errorf("delete seq %d: %w", seq, err)
		}
		deleted++
		s.depth--
		s.bytes -= size
	}
	if err := stmt.Close(); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if deleted == 0 {
		return tx.Rollback()
	}
	if err := writeMeta(ctx, tx, &s); err != nil {
		return err
	}
	if err := o.readOldest(ctx, tx, &s); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	o.mu.Lock()
	o.st = s
	o.mu.Unlock()
	return nil
}

// Pending returns up to limit committed, unacknowledged records with seq >
// afterSeq, in seq order (limit ≤ 0 means protocol.MaxBatch).
func (o *Outbox) Pending(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error) {
	return o.query(ctx, "pending", selectRecords+`WHERE r.seq > ? ORDER BY r.seq LIMIT ?`, int64(afterSeq), batchLimit(limit))
}

// PendingAlerts returns up to limit committed, unacknowledged alert records
// (raised and cleared transitions) with seq > afterSeq, in seq order. It
// reads the alerts index only, not the readings.
func (o *Outbox) PendingAlerts(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error) {
	return o.query(ctx, "pending alerts", selectRecords+`WHERE r.kind = 1 AND r.seq > ? ORDER BY r.seq LIMIT ?`, int64(afterSeq), batchLimit(limit))
}

// LatestPerSensor returns the newest committed, unacknowledged reading of
// each sensor, in seq order. A sensor whose newest reading was acknowledged
// is absent (the hub has a newer value than any left). It scans the whole
// outbox (O(Depth)): call it once per reconnection, not per batch.
func (o *Outbox) LatestPerSensor(ctx context.Context) ([]protocol.Record, error) {
	recs, err := o.query(ctx, "latest per sensor", selectRecords+
		`JOIN (SELECT max(seq) AS seq FROM records WHERE kind = 0 GROUP BY series) m ON m.seq = r.seq ORDER BY r.seq`)
	if err != nil {
		return nil, err
	}
	// A sensor whose unit changed has two series: keep its newest reading.
	newest := make(map[string]uint64, len(recs))
	for _, r := range recs {
		newest[r.Sensor] = r.Seq // recs are in seq order
	}
	return slices.DeleteFunc(recs, func(r protocol.Record) bool { return newest[r.Sensor] != r.Seq }), nil
}

func batchLimit(limit int) int {
	if limit <= 0 {
		return protocol.MaxBatch
	}
	return limit
}

func (o *Outbox) query(ctx context.Context, what, q string, args ...any) ([]protocol.Record, error) {
	if o.isClosed() {
		return nil, ErrClosed
	}
	rows, err := o.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: %s: %w", what, sqlitex.Classify(err))
	}
	defer func() { _ = rows.Close() }() // rows.Err below reports read errors
	var recs []protocol.Record
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("outbox: %s: %w", what, err)
		}
		recs = append(recs, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: %s: %w", what, sqlitex.Classify(err))
	}
	return recs, nil
}

// Committed returns the last committed seq and a channel that is closed when
// a later commit adds records, so the uplink can wait instead of polling.
func (o *Outbox) Committed() (uint64, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st.committed, o.commitCh
}

// Stats returns a snapshot of the outbox's counters. It does not touch the
// database.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := Stats{
		Depth:        o.st.depth,
		Bytes:        o.st.bytes,
		Buffered:     len(o.buf),
		LastSeq:      o.lastSeq,
		CommittedSeq: o.st.committed,
		OldestSeq:    o.st.oldestSeq,
		Dropped:      o.st.dropped,
		Unreported:   o.st.un,
		FlushErr:     o.flushErr,
	}
	if o.st.oldestSeq != 0 {
		st.OldestAge = max(0, o.opts.Clock().Sub(time.UnixMilli(o.st.oldestAdded)))
	}
	return st
}

// Close stops accepting records, commits the buffer and closes the database.
// If the final commit fails the buffered records are lost (they were never
// published) and the error says how many.
func (o *Outbox) Close(ctx context.Context) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.closed = true
	o.mu.Unlock()
	close(o.quit)
	<-o.done
	var ferr error
	if err := o.flush(ctx); err != nil {
		o.mu.Lock()
		n := len(o.buf)
		o.mu.Unlock()
		ferr = fmt.Errorf("outbox: close: %d buffered records not stored: %w", n, err)
	}
	if err := o.db.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("outbox: close database: %w", err))
	}
	return ferr
}
