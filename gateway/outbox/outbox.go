package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	// cacheKiB: page cache per connection. Writes append at the right edge
	// and reads walk the table once in seq order, so a small cache does;
	// SQLite's default (2 MiB per connection) showed in the gateway's RSS.
	cacheKiB = 256
)

// Sequence reservation (see "Sequence numbers" in the package comment).
const (
	// reserveBlock is how many seqs one reservation makes assignable. A
	// crash skips at most this many seqs (plus those that were buffered).
	reserveBlock = 1024
	// reserveLow: a commit that finds fewer than this many reserved seqs
	// left raises the reservation in its own transaction (no extra fsync);
	// below reserveLow/2 the background goroutine raises it in a
	// transaction of its own, so Append (almost) never waits for it.
	reserveLow = reserveBlock / 2
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
	// MaxBytes bounds the estimated stored size of the committed,
	// unacknowledged records; beyond it the oldest are dropped. 0 means
	// DefaultMaxBytes, < 0 no limit.
	MaxBytes int64
	// MaxAge drops records stored longer ago than this (by Clock, at each
	// commit). 0 or < 0: no age limit.
	MaxAge time.Duration

	// FlushInterval is the longest a record waits in memory before it is
	// committed (unless it is acknowledged first), and the longest an
	// acknowledged record stays stored. 0 means DefaultFlushInterval.
	FlushInterval time.Duration
	// FlushRecords commits the buffer as soon as this many unacknowledged
	// records wait in it. 0 means DefaultFlushRecords.
	FlushRecords int

	// Clock returns the current time, used for the stored time of each record
	// (MaxAge, Stats.OldestAge); nil means time.Now.
	Clock func() time.Time

	// DropNotice, if not nil, builds the record that reports records dropped
	// to stay within the bounds (e.g. a fault "seqs a..b dropped"). The
	// outbox appends it after a commit that dropped records (and at Open if
	// a drop is still unreported) and marks the range reported in the
	// transaction that commits it (or, if the hub acknowledged it while it
	// was still buffered, in the next commit). It must return a record that
	// passes protocol.Record.Validate once it has a seq (Open checks one).
	// It is called with the outbox locked and must not call the Outbox.
	DropNotice func(DropRange) protocol.Record

	// tune adjusts the SQLite options; tests use it to compare settings.
	tune func(*sqlitex.Options)
	// beforeCommit, if set (by tests), runs in each commit transaction just
	// before it commits; an error fails the commit.
	beforeCommit func() error
	// bootID returns the kernel's boot id (tests simulate a reboot); nil
	// reads /proc/sys/kernel/random/boot_id.
	bootID func() string
}

// DropRange describes records deleted unacknowledged to stay within the
// bounds. Some of them may have been published already.
type DropRange struct {
	First, Last uint64 // first and last dropped seq
	Count       uint64 // records dropped in First..Last (records acknowledged in between are not counted; a crash range counts all its seqs)
	Reasons     string // why, comma-separated: max_records, max_bytes, max_age (bounds), crash (see Open)
}

// Stats is a snapshot of the outbox's state, for heartbeats and metrics.
type Stats struct {
	Depth          int64         // records not yet acknowledged, buffered or committed
	Bytes          int64         // estimated stored size of those records: 32 bytes each plus the JSON body of alerts, faults and mono-clock records
	Buffered       int           // unacknowledged records appended but not committed yet (part of Depth)
	LastSeq        uint64        // last seq assigned; after Open, the high-water mark (no seq up to it is assigned again)
	CommittedSeq   uint64        // greatest seq written to the database (after Open: the high-water mark)
	OldestSeq      uint64        // seq of the oldest unacknowledged record, buffered or committed; 0 when none
	OldestAge      time.Duration // how long ago that record was appended
	Dropped        uint64        // records ever dropped by the bounds (persisted)
	Unreported     DropRange     // dropped and not yet reported by a DropNotice record; Count 0 when none
	AckedUnwritten uint64        // records acknowledged before they were ever written to disk (since Open)
	AckedStored    int           // acknowledged records still stored, deleted by the next commit
	FlushErr       error         // error of the last commit attempt, nil once one succeeds
	Recovered      int           // records Open recovered from the journal (appended, not committed, before a crash)
	JournalErr     error         // why the journal is off (a failed write), nil while it works; a crash then may lose buffered records, reported as with a power cut
}

// state is the outbox's view of the database. Only a writer (holding wmu)
// changes it, and it does so under mu, after its transaction committed.
type state struct {
	committed   uint64 // greatest seq written to the table; after Open, the high-water mark
	reserved    uint64 // meta.last_seq: no seq above it was ever assigned
	floor       uint64 // meta.floor: every seq up to it is stored or was acknowledged
	rows        int64  // rows in the records table, acknowledged ones not deleted yet included
	bytes       int64  // their estimated size
	oldestSeq   uint64 // the table's first row; 0 when empty
	oldestAdded int64
	dropped     uint64
	un          DropRange
}

// rowRef locates a stored row for Stats.OldestSeq and OldestAge.
type rowRef struct {
	seq   uint64
	added int64 // unix ms
}

// Outbox is the durable, bounded outbox. Its methods are safe for
// concurrent use.
//
// A record is in exactly one of these places until it is acknowledged:
// the buffer (buf), the batch a commit is writing (inflight), or the
// records table. Ack removes a buffered record at once; an acknowledged
// inflight or stored record is remembered (ackedInflight, acked) and hidden
// from the read methods until a commit deletes its row.
type Outbox struct {
	db   *sql.DB
	opts Options // defaults resolved

	// wmu serialises the database writes (commits, reservations) and is
	// taken before amu and mu.
	wmu    sync.Mutex
	series map[seriesKey]int64 // the series table; guarded by wmu

	// amu serialises Ack (taken before mu).
	amu sync.Mutex

	mu       sync.Mutex
	st       state
	gen      uint64 // incremented when a commit changed the table (after it committed)
	lastSeq  uint64 // last seq assigned
	buf      []row  // unacknowledged records waiting for a commit, in seq order
	bufBytes int64
	spare    []row // a drained buffer, reused
	// inflight is the batch the running commit writes (nil between
	// commits); ackedInflight holds those of its records (seq → size)
	// acknowledged meanwhile.
	inflight           []row
	inflightBytes      int64
	ackedInflight      map[uint64]int64
	ackedInflightBytes int64
	// acked holds acknowledged records whose rows are in the table (seq →
	// size), deleted by the next commit. Invariant: every key has a row.
	acked      map[uint64]int64
	ackedBytes int64
	// noticeAcked: the queued DropNotice record was acknowledged before it
	// was written; the next commit marks the range reported in meta.
	noticeAcked bool
	// oldest is the table's oldest unacknowledged row (seq 0: none, or
	// not known after a failed read). Every row below scanFrom is acked.
	oldest         rowRef
	scanFrom       uint64
	ackedUnwritten uint64
	flushErr       error
	noticeQueued   bool
	metaPending    bool     // meta must be written by the next commit (Open found a crash)
	jr             *journal // buffered records, for crash recovery (journal.go); nil for an in-memory database
	recovered      int
	closed         bool
	commitCh       chan struct{} // closed and replaced at each commit of new records
	appendCh       chan struct{} // closed at the next Append; nil until Appended asks for one

	// txs counts the write transactions committed (commits and
	// reservations), for tests and benchmarks.
	txs atomic.Int64
	// beforeCommit is Options.beforeCommit; tests change it holding wmu.
	beforeCommit func() error
	// afterRead, if set (by tests, while nothing reads), runs after each
	// database read of the read methods and Ack, before its result is
	// checked against the current state.
	afterRead func()

	kick  chan struct{} // there is something to commit: arm the flush timer
	topup chan struct{} // the reservation runs low
	quit  chan struct{}
	done  chan struct{}
}

// Open opens (or creates) the outbox database at path, recovers the sequence
// high-water mark and counters, applies the bounds, reserves the next seqs,
// and starts the goroutine that commits the buffer every FlushInterval.
// Close stops it.
func Open(ctx context.Context, path string, opts Options) (*Outbox, error) {
	if err := resolve(&opts); err != nil {
		return nil, err
	}
	so := sqlitex.Options{
		FullSync:     true, // see the package comment: a reservation and a committed record must survive a power cut
		MaxOpenConns: 4,
		Pragmas: []string{
			fmt.Sprintf("page_size(%d)", pageSize),
			fmt.Sprintf("wal_autocheckpoint(%d)", walAutocheckpoint),
			fmt.Sprintf("journal_size_limit(%d)", journalSizeLimit),
			fmt.Sprintf("cache_size(%d)", -cacheKiB),
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
		db:            db,
		opts:          opts,
		beforeCommit:  opts.beforeCommit,
		acked:         make(map[uint64]int64),
		ackedInflight: make(map[uint64]int64),
		commitCh:      make(chan struct{}),
		kick:          make(chan struct{}, 1),
		topup:         make(chan struct{}, 1),
		quit:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	if path != ":memory:" && !strings.HasPrefix(path, "file:") {
		o.jr = &journal{path: path, boot: opts.bootID()}
	}
	if err := o.load(ctx); err != nil {
		if o.jr != nil {
			o.jr.close(false)
		}
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
	if o.bootID == nil {
		o.bootID = readBootID
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

// load migrates the schema, reads the persisted state, applies the bounds
// and reserves the first block of seqs.
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
	err = o.db.QueryRowContext(ctx, `SELECT last_seq, floor, dropped, un_first, un_last, un_count, un_reasons FROM meta WHERE id = 1`).
		Scan(&s.reserved, &s.floor, &s.dropped, &s.un.First, &s.un.Last, &s.un.Count, &reasons)
	if err != nil {
		return fmt.Errorf("outbox: read meta: %w", sqlitex.Classify(err))
	}
	s.un.Reasons = reasons
	if err := o.loadSeries(ctx); err != nil {
		return err
	}
	// A full scan: at boot only, O(depth).
	err = o.db.QueryRowContext(ctx, `SELECT ifnull(max(seq), 0), count(*), ifnull(sum(`+sizeSQL+`), 0) FROM records`).
		Scan(&maxSeq, &s.rows, &s.bytes)
	if err != nil {
		return fmt.Errorf("outbox: read records: %w", sqlitex.Classify(err))
	}
	// The high-water mark: every seq ever assigned is at most the reserved
	// mark (meta.last_seq, written before the seqs were handed out) or, in
	// a database written before reservations, the greatest stored seq.
	s.reserved = max(s.reserved, uint64(maxSeq))
	s.committed = s.reserved
	// The commit of a stored record took every seq assigned before it, so
	// everything up to the greatest stored seq is accounted for. Above it,
	// up to the reserved mark, a crash or power cut may have lost records
	// that were assigned in memory and not committed, unless the hub had
	// acknowledged them: report the range, like dropped records.
	s.floor = max(s.floor, uint64(maxSeq))
	last := s.reserved // every seq handed out is at most last
	js, recovered, complete, err := o.recover(s)
	if err != nil {
		return err
	}
	if complete {
		// The journal accounts for every seq handed out (see journal.go):
		// no record was lost, and the next seq follows the last one.
		last = s.floor
		for i := range recovered {
			last = max(last, recovered[i].seq)
		}
		last = max(last, js.base)
		if last > s.floor {
			s.floor = last
			o.metaPending = true
		}
		s.committed = last // the high-water mark: no seq above it was handed out
	} else {
		for i := range recovered {
			s.floor = max(s.floor, recovered[i].seq)
		}
		if s.reserved > s.floor {
			s.un = mergeRange(s.un, DropRange{First: s.floor + 1, Last: s.reserved, Count: s.reserved - s.floor, Reasons: "crash"})
			o.metaPending = true
		}
	}
	if err := o.readOldest(ctx, o.db, &s); err != nil {
		return err
	}
	o.st = s
	o.lastSeq = last
	o.oldest = rowRef{s.oldestSeq, s.oldestAdded}
	o.scanFrom = s.oldestSeq
	o.buf, o.recovered = recovered, len(recovered)
	for i := range recovered {
		o.bufBytes += recovered[i].size()
	}
	if o.jr != nil {
		// A new generation for this run, before any seq is handed out: the
		// previous run's must not be taken for this one's.
		if err := o.jr.open(js.idx, js.gen); err == nil {
			_ = o.jr.rewrite(o.lastSeq, o.st.reserved, o.buf)
		}
	}

	// Apply the bounds (they may be smaller than last time, or records
	// aged) and reserve seqs (the reservation is used up: lastSeq is the
	// reserved mark). On a full disk the outbox opens anyway, so that the
	// stored records can be published (and deleted once acknowledged):
	// the error stays in Stats.FlushErr, and Append reports it until a
	// commit succeeds.
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if err := o.commitLocked(ctx); err != nil && !errors.Is(err, ErrDiskFull) {
		return err
	}
	return nil
}

// recover reads the journal left by the previous run: the records in it
// above the floor (neither stored nor acknowledged), and whether it is
// complete (written during this boot; see journal.go). js is what was read
// (its file and generation: the next one writes the other file).
func (o *Outbox) recover(s state) (js journalState, rows []row, complete bool, err error) {
	if o.jr == nil {
		return js, nil, false, nil
	}
	if js, err = readJournal(o.jr); err != nil || !js.found {
		return js, nil, false, err
	}
	if js.base > s.reserved {
		// Not this database's journal (the database was replaced): its
		// seqs mean nothing here.
		return js, nil, false, nil
	}
	for _, r := range js.rows {
		if r.seq > s.floor && r.seq <= s.reserved {
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.seq, b.seq) })
	rows = slices.CompactFunc(rows, func(a, b row) bool { return a.seq == b.seq })
	// Written during this boot, and the last to reserve seqs: complete, even
	// with a torn last entry (an Append killed in its write, whose seq
	// nobody saw).
	return js, rows, js.boot != "" && js.boot == o.jr.boot && js.reserved == s.reserved, nil
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

// signal wakes the goroutine waiting on ch, if it is not woken already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// run commits FlushInterval after there was something to commit (a first
// buffered record, a first acknowledged stored record), and raises the seq
// reservation when it runs low.
func (o *Outbox) run() {
	defer close(o.done)
	timer := time.NewTimer(o.opts.FlushInterval)
	timer.Stop()
	armed := false
	for {
		select {
		case <-o.quit:
			timer.Stop()
			return
		case <-o.kick:
			if !armed {
				timer.Reset(o.opts.FlushInterval)
				armed = true
			}
		case <-o.topup:
			// A failure is retried by the next commit, or by the Append
			// that finds no reserved seq left (and reports it).
			_ = o.reserve(context.Background(), reserveLow/2)
		case <-timer.C:
			armed = false
			// A failure stays in o.flushErr: Append, Flush and Stats report it.
			_ = o.flush(context.Background())
			o.mu.Lock()
			more := len(o.buf) > 0 || len(o.acked) > 0 || o.noticeAcked
			o.mu.Unlock()
			if more {
				timer.Reset(o.opts.FlushInterval)
				armed = true
			}
		}
	}
}

// Append validates rec (whose Seq must be 0), assigns it the next seq and
// buffers it. From then on the read methods that include the buffer (Peek,
// PendingAlerts, LatestPerSensor) return it; it is committed within
// FlushInterval unless it is acknowledged first, in which case it is never
// written (see the package comment for what a crash can lose). If
// FlushRecords unacknowledged records are already waiting, or the last
// commit failed, Append first commits the buffer, and returns that error,
// without accepting rec, if it fails (e.g. ErrDiskFull). If no reserved seq
// is left, it first reserves more (a small transaction, rare) and returns
// that error if it fails.
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
		full := len(o.buf) >= o.opts.FlushRecords || o.flushErr != nil
		if !full && o.lastSeq < o.st.reserved {
			break // holding mu
		}
		o.mu.Unlock()
		if full {
			if err := o.flush(ctx); err != nil {
				return 0, err
			}
			continue
		}
		if err := o.reserve(ctx, 1); err != nil {
			return 0, err
		}
	}
	seq := o.pushLocked(r)
	o.mu.Unlock()
	return seq, nil
}

// pushLocked assigns r the next seq and buffers it. o.mu is held and a
// reserved seq is left (o.lastSeq < o.st.reserved).
func (o *Outbox) pushLocked(r row) uint64 {
	o.lastSeq++
	r.seq = o.lastSeq
	r.added = o.opts.Clock().UnixMilli()
	if o.buf == nil {
		o.buf, o.spare = o.spare, nil
	}
	o.buf = append(o.buf, r)
	o.bufBytes += r.size()
	if o.jr != nil {
		// Before anyone sees the seq. A failure turns the journal off
		// (Stats.JournalErr) until the next commit; the record is buffered
		// all the same.
		_ = o.jr.append(&o.buf[len(o.buf)-1])
	}
	if o.appendCh != nil {
		close(o.appendCh)
		o.appendCh = nil
	}
	if len(o.buf) == 1 {
		signal(o.kick)
	}
	if o.st.reserved-o.lastSeq < reserveLow/2 {
		signal(o.topup)
	}
	return r.seq
}

// reserve raises the reserved mark (meta.last_seq) to lastSeq +
// reserveBlock, in a transaction of its own, unless at least minRoom
// reserved seqs are still left.
func (o *Outbox) reserve(ctx context.Context, minRoom uint64) (err error) {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.mu.Lock()
	s := o.st
	if o.closed || s.reserved-o.lastSeq >= minRoom {
		o.mu.Unlock()
		return nil
	}
	s.reserved = o.lastSeq + reserveBlock
	o.mu.Unlock()
	defer func() {
		if err != nil {
			err = sqlitex.Classify(err)
			if errors.Is(err, ErrDiskFull) {
				err = fmt.Errorf("outbox: disk full: cannot reserve seqs: %w", err)
			} else {
				err = fmt.Errorf("outbox: reserve seqs: %w", err)
			}
		}
	}()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := writeMeta(ctx, tx, &s); err != nil {
		_ = tx.Rollback() // the first error is the one to report
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	o.txs.Add(1)
	o.mu.Lock()
	o.st.reserved = s.reserved
	if o.jr != nil {
		// The journal must know the reservation: at Open a different one
		// means another process used the database since.
		_ = o.jr.rewrite(o.lastSeq, o.st.reserved, o.buf)
	}
	o.mu.Unlock()
	return nil
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

// Flush commits every unacknowledged record appended before the call and
// deletes the stored records acknowledged before it. When it returns nil,
// those records are durable (and visible to Pending too).
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

// work is what one commit writes.
type work struct {
	dels     []uint64 // acknowledged stored records to delete, ascending
	batch    []row    // records to insert
	reserved uint64   // meta.last_seq to store
	floor    uint64   // meta.floor to store: the last seq assigned when the commit began
	meta     bool     // write meta even if nothing else asks for it
	clearUn  bool     // the drop notice was acknowledged unwritten: the range is reported
}

// commitLocked commits, in one transaction: the deletes of acknowledged
// stored records, the buffer (possibly empty), the bounds and the seq
// reservation. o.wmu is held.
func (o *Outbox) commitLocked(ctx context.Context) error {
	o.mu.Lock()
	w := work{batch: o.buf, clearUn: o.noticeAcked, floor: o.lastSeq, meta: o.metaPending}
	o.buf = nil
	o.inflight, o.inflightBytes, o.bufBytes = w.batch, o.bufBytes, 0
	if len(o.acked) > 0 {
		w.dels = make([]uint64, 0, len(o.acked))
		for seq := range o.acked {
			w.dels = append(w.dels, seq)
		}
		slices.Sort(w.dels)
	}
	s := o.st
	room := s.reserved - o.lastSeq
	w.reserved = s.reserved
	reserveOnly := false
	switch {
	case o.closed:
		// No seq above lastSeq was handed out and none will be: the next
		// Open continues right after it, without a gap.
		w.reserved = o.lastSeq
		w.meta = w.meta || s.floor < o.lastSeq // a clean close leaves no range to report
		reserveOnly = w.reserved != s.reserved || w.meta
	case room < reserveLow:
		w.reserved = o.lastSeq + reserveBlock
		reserveOnly = room < reserveLow/2
	}
	o.mu.Unlock()

	now := o.opts.Clock().UnixMilli()
	if len(w.batch) == 0 && len(w.dels) == 0 && !w.clearUn && !reserveOnly && !w.meta && !o.overBounds(&s, now) {
		o.mu.Lock()
		o.inflight, o.inflightBytes = nil, 0
		o.flushErr = nil
		if o.jr != nil && (o.jr.entries > len(o.buf) || !o.jr.on) {
			// Records acknowledged before they were committed: drop their entries.
			_ = o.jr.rewrite(o.lastSeq, o.st.reserved, o.buf)
		}
		o.maybeQueueNoticeLocked()
		o.mu.Unlock()
		return nil
	}
	dropLast, err := o.writeBatch(ctx, &w, &s, now)

	o.mu.Lock()
	batch := o.inflight
	o.inflight, o.inflightBytes = nil, 0
	if err != nil {
		err = sqlitex.Classify(err)
		if errors.Is(err, ErrDiskFull) {
			err = fmt.Errorf("outbox: disk full: %d records wait in memory, stored records are intact: %w", len(batch), err)
		} else {
			err = fmt.Errorf("outbox: commit %d records: %w", len(batch), err)
		}
		// The records acknowledged meanwhile never need writing.
		if len(o.ackedInflight) > 0 {
			batch = slices.DeleteFunc(batch, func(r row) bool {
				if _, ok := o.ackedInflight[r.seq]; ok {
					o.ackedUnwritten++
					o.noticeAcked = o.noticeAcked || r.notice
					return true
				}
				return false
			})
			clear(o.ackedInflight)
			o.ackedInflightBytes = 0
		}
		for i := range batch {
			o.bufBytes += batch[i].size()
		}
		o.buf = append(batch, o.buf...)
		o.flushErr = err
		o.mu.Unlock()
		return err
	}
	o.flushErr = nil
	if w.meta {
		o.metaPending = false
	}
	o.gen++
	newRecords := s.committed != o.st.committed
	for _, seq := range w.dels {
		o.ackedBytes -= o.acked[seq]
		delete(o.acked, seq)
	}
	// The bounds deleted every row up to dropLast, acknowledged or not.
	if dropLast > 0 {
		for seq, size := range o.acked {
			if seq <= dropLast {
				o.ackedBytes -= size
				delete(o.acked, seq)
			}
		}
	}
	for seq, size := range o.ackedInflight {
		if seq > dropLast {
			o.acked[seq] = size
			o.ackedBytes += size
		}
	}
	clear(o.ackedInflight)
	o.ackedInflightBytes = 0
	if w.clearUn {
		o.noticeAcked, o.noticeQueued = false, false
	}
	for i := range batch {
		if batch[i].notice {
			o.noticeQueued = false
		}
	}
	o.st = s
	if o.jr != nil {
		// The batch is stored: the journal keeps only what is still buffered.
		_ = o.jr.rewrite(o.lastSeq, o.st.reserved, o.buf)
	}
	if newRecords {
		close(o.commitCh)
		o.commitCh = make(chan struct{})
	}
	if o.spare == nil {
		clear(batch)
		o.spare = batch[:0]
	}
	o.maybeQueueNoticeLocked()
	more := len(o.acked) > 0
	o.mu.Unlock()
	if more {
		signal(o.kick) // acknowledged during the commit: delete them with the next one
	}
	o.refreshOldest(ctx)
	return nil
}

// maybeQueueNoticeLocked appends the DropNotice record for the unreported
// drops, if any and not queued yet. o.mu is held.
func (o *Outbox) maybeQueueNoticeLocked() {
	un := o.st.un
	if un.Count == 0 || o.opts.DropNotice == nil || o.noticeQueued || o.closed || o.lastSeq >= o.st.reserved {
		return // (without a reserved seq, the next commit, which reserves, queues it)
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
	return o.dropReason(s.rows, s.bytes, s.oldestAdded, now) != ""
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

// writeBatch deletes w.dels, inserts w.batch, applies the bounds and updates
// meta in one transaction, updating s to match. It returns the last seq the
// bounds dropped (0: none).
func (o *Outbox) writeBatch(ctx context.Context, w *work, s *state, now int64) (dropLast uint64, err error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback() // the first error is the one to report
		}
	}()
	metaDirty := w.reserved != s.reserved || w.clearUn || w.meta
	s.reserved = w.reserved
	if w.clearUn {
		s.un = DropRange{}
	}
	// Deletes first: the bounds then count unacknowledged records only.
	if len(w.dels) > 0 {
		if err := deleteRows(ctx, tx, w.dels, s); err != nil {
			return 0, err
		}
		if err := o.readOldest(ctx, tx, s); err != nil {
			return 0, err
		}
	}
	var newSeries map[seriesKey]int64 // added by this transaction
	if len(w.batch) > 0 {
		stmt, err := tx.PrepareContext(ctx, insertSQL)
		if err != nil {
			return 0, fmt.Errorf("prepare insert: %w", err)
		}
		for i := range w.batch {
			r := &w.batch[i]
			id, ok := o.series[r.series]
			if !ok {
				if id, ok = newSeries[r.series]; !ok {
					err := tx.QueryRowContext(ctx, `INSERT INTO series (sensor, unit) VALUES (?, ?) RETURNING id`, r.series.sensor, r.series.unit).Scan(&id)
					if err != nil {
						_ = stmt.Close()
						return 0, fmt.Errorf("add series %q %q: %w", r.series.sensor, r.series.unit, err)
					}
					if newSeries == nil {
						newSeries = make(map[seriesKey]int64)
					}
					newSeries[r.series] = id
				}
			}
			if _, err := stmt.ExecContext(ctx, r.args(id)...); err != nil {
				_ = stmt.Close()
				return 0, fmt.Errorf("insert seq %d: %w", r.seq, err)
			}
			s.rows++
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
			return 0, fmt.Errorf("insert: %w", err)
		}
		s.committed = w.batch[len(w.batch)-1].seq
	}
	dropLast, err = o.dropOldest(ctx, tx, s, now)
	if err != nil {
		return 0, err
	}
	if dropLast > 0 || metaDirty {
		// Every seq up to w.floor is in this commit, stored before it, or
		// acknowledged.
		s.floor = max(s.floor, w.floor)
		if err := writeMeta(ctx, tx, s); err != nil {
			return 0, err
		}
	}
	if o.beforeCommit != nil {
		if err := o.beforeCommit(); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	o.txs.Add(1)
	for k, id := range newSeries {
		o.series[k] = id
	}
	return dropLast, nil
}

// deleteRows deletes the rows of the acknowledged seqs, updating s. A seq
// without a row is ignored.
func deleteRows(ctx context.Context, tx *sql.Tx, seqs []uint64, s *state) error {
	stmt, err := tx.PrepareContext(ctx, `DELETE FROM records WHERE seq = ? RETURNING `+sizeSQL)
	if err != nil {
		return fmt.Errorf("prepare delete: %w", err)
	}
	for _, seq := range seqs {
		var size int64
		err := stmt.QueryRowContext(ctx, int64(seq)).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			_ = stmt.Close()
			return fmt.Errorf("delete acknowledged seq %d: %w", seq, err)
		}
		s.rows--
		s.bytes -= size
	}
	if err := stmt.Close(); err != nil {
		return fmt.Errorf("delete acknowledged: %w", err)
	}
	return nil
}

// dropOldest deletes the oldest records while a bound is exceeded and
// records the drop in s. It returns the last seq it deleted (0: none).
func (o *Outbox) dropOldest(ctx context.Context, tx *sql.Tx, s *state, now int64) (uint64, error) {
	if !o.overBounds(s, now) {
		return 0, nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT seq, `+sizeSQL+`, t + lag FROM records ORDER BY seq`)
	if err != nil {
		return 0, fmt.Errorf("select oldest: %w", err)
	}
	var (
		d       DropRange
		reasons []string
	)
	for rows.Next() {
		var seq, size, added int64
		if err := rows.Scan(&seq, &size, &added); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("select oldest: %w", err)
		}
		why := o.dropReason(s.rows, s.bytes, added, now)
		if why == "" {
			break
		}
		if d.Count == 0 {
			d.First = uint64(seq)
		}
		d.Last = uint64(seq)
		d.Count++
		s.rows--
		s.bytes -= size
		if !slices.Contains(reasons, why) {
			reasons = append(reasons, why)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("select oldest: %w", err)
	}
	if d.Count == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE seq <= ?`, int64(d.Last)); err != nil {
		return 0, fmt.Errorf("drop seqs %d..%d: %w", d.First, d.Last, err)
	}
	if err := o.readOldest(ctx, tx, s); err != nil {
		return 0, err
	}
	s.dropped += d.Count
	d.Reasons = strings.Join(reasons, ",")
	s.un = mergeRange(s.un, d)
	return d.Last, nil
}

// mergeRange adds the range d to the unreported range un: one range that
// covers both, the counts added, the reasons merged.
func mergeRange(un, d DropRange) DropRange {
	if un.Count == 0 {
		return d
	}
	un.First, un.Last = min(un.First, d.First), max(un.Last, d.Last)
	un.Count += d.Count
	if d.Reasons != "" {
		un.Reasons = mergeReasons(un.Reasons, strings.Split(d.Reasons, ","))
	}
	return un
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

// writeMeta stores s's counters and its reserved mark (column last_seq:
// older versions read it as the seq high-water mark, which it is).
func writeMeta(ctx context.Context, tx *sql.Tx, s *state) error {
	_, err := tx.ExecContext(ctx, `UPDATE meta SET last_seq = ?, floor = ?, dropped = ?, un_first = ?, un_last = ?, un_count = ?, un_reasons = ? WHERE id = 1`,
		int64(s.reserved), int64(s.floor), int64(s.dropped), int64(s.un.First), int64(s.un.Last), int64(s.un.Count), s.un.Reasons)
	if err != nil {
		return fmt.Errorf("update meta: %w", err)
	}
	return nil
}

// Stats returns a snapshot of the outbox's counters. It does not touch the
// database.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	mem := len(o.inflight) - len(o.ackedInflight) + len(o.buf)
	memBytes := o.inflightBytes - o.ackedInflightBytes + o.bufBytes
	st := Stats{
		Depth:          o.st.rows - int64(len(o.acked)) + int64(mem),
		Bytes:          o.st.bytes - o.ackedBytes + memBytes,
		Buffered:       mem,
		LastSeq:        o.lastSeq,
		CommittedSeq:   o.st.committed,
		Dropped:        o.st.dropped,
		Unreported:     o.st.un,
		AckedUnwritten: o.ackedUnwritten,
		AckedStored:    len(o.acked),
		FlushErr:       o.flushErr,
		Recovered:      o.recovered,
	}
	if o.jr != nil {
		st.JournalErr = o.jr.err
	}
	if o.noticeAcked {
		st.Unreported = DropRange{}
	}
	var oldest rowRef
	switch {
	case o.st.rows > int64(len(o.acked)):
		oldest = o.oldest
		if oldest.seq == 0 { // not known (a read failed): the table's first row
			oldest = rowRef{o.st.oldestSeq, o.st.oldestAdded}
		}
	default:
		for _, r := range o.inflight {
			if _, ok := o.ackedInflight[r.seq]; !ok {
				oldest = rowRef{r.seq, r.added}
				break
			}
		}
		if oldest.seq == 0 && len(o.buf) > 0 {
			oldest = rowRef{o.buf[0].seq, o.buf[0].added}
		}
	}
	if oldest.seq != 0 {
		st.OldestSeq = oldest.seq
		st.OldestAge = max(0, o.opts.Clock().Sub(time.UnixMilli(oldest.added)))
	}
	return st
}

// closedCh is returned by Committed and Appended once the outbox is closed.
var closedCh = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// Close stops accepting records, commits the buffer and the pending
// deletes, and closes the database. If the final commit fails the buffered
// records are lost (they may have been published; their seqs are not
// assigned again) and the error says how many. Goroutines waiting on a
// Committed or Appended channel are woken.
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
	o.mu.Lock()
	if o.jr != nil {
		// Everything is stored unless the final commit failed: then the
		// journal keeps the buffered records for the next Open.
		o.jr.close(ferr == nil)
	}
	close(o.commitCh)
	o.commitCh = closedCh
	if o.appendCh != nil {
		close(o.appendCh)
	}
	o.appendCh = closedCh
	o.mu.Unlock()
	if err := o.db.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("outbox: close database: %w", err))
	}
	return ferr
}
