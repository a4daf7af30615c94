package outbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/sqlitex"
)

// The read methods combine the table with the records in memory. Rows of
// acknowledged records may still be in the table (deleted by the next
// commit): they are filtered out under o.mu, and a read restarts when a
// commit changed the table meanwhile (o.gen), so a record acknowledged
// before a read started is never returned, and a cursor (afterSeq) never
// skips a record: every result is every unacknowledged record in
// (afterSeq, s] for some s, up to the limit.

// Queries of the read methods; the seq range is (?, ?].
const (
	pendingSQL = selectRecords + `WHERE r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?`
	alertsSQL  = selectRecords + `WHERE r.kind = 1 AND r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?`
	// latestSQL: the newest unacknowledged reading of each series; the
	// second argument is the JSON array of acknowledged stored seqs.
	latestSQL = selectRecords + `JOIN (SELECT max(seq) AS seq FROM records WHERE kind = 0 AND seq <= ? AND seq NOT IN (SELECT value FROM json_each(?)) GROUP BY series) m ON m.seq = r.seq ORDER BY r.seq`
)

// Peek returns up to limit unacknowledged records with seq > afterSeq, in
// seq order (limit ≤ 0 means protocol.MaxBatch): the committed ones, then
// those still in memory, which the uplink may publish before they are
// committed (see the package comment). Acknowledged records are never
// returned.
func (o *Outbox) Peek(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error) {
	return o.list(ctx, "peek", pendingSQL, afterSeq, batchLimit(limit), false, true)
}

// Pending returns up to limit committed, unacknowledged records with seq >
// afterSeq, in seq order (limit ≤ 0 means protocol.MaxBatch). It does not
// return buffered records: use Peek to publish.
func (o *Outbox) Pending(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error) {
	return o.list(ctx, "pending", pendingSQL, afterSeq, batchLimit(limit), false, false)
}

// PendingAlerts returns up to limit unacknowledged alert records (raised
// and cleared transitions), committed or buffered, with seq > afterSeq, in
// seq order. It reads the alerts index only, not the readings.
func (o *Outbox) PendingAlerts(ctx context.Context, afterSeq uint64, limit int) ([]protocol.Record, error) {
	return o.list(ctx, "pending alerts", alertsSQL, afterSeq, batchLimit(limit), true, true)
}

func batchLimit(limit int) int {
	if limit <= 0 {
		return protocol.MaxBatch
	}
	return limit
}

// list implements Peek, Pending and PendingAlerts: q selects the table's
// rows (seq range, limit); alerts selects the alert records in memory, mem
// whether to include memory at all.
func (o *Outbox) list(ctx context.Context, what, q string, after uint64, limit int, alerts, mem bool) ([]protocol.Record, error) {
restart:
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return nil, ErrClosed
		}
		gen, committed := o.gen, o.st.committed
		inTable := o.st.rows > int64(len(o.acked)) && after < committed
		var memRows []row
		if mem {
			memRows = o.memRowsLocked(after, limit, alerts)
		}
		o.mu.Unlock()

		var recs []protocol.Record
		for cursor := after; inTable && len(recs) < limit; {
			n := limit - len(recs)
			page, err := o.query(ctx, what, q, int64(cursor), int64(committed), n)
			if err != nil {
				return nil, err
			}
			if o.afterRead != nil {
				o.afterRead()
			}
			o.mu.Lock()
			if o.gen != gen {
				o.mu.Unlock()
				continue restart
			}
			for _, r := range page {
				if _, acked := o.acked[r.Seq]; !acked {
					recs = append(recs, r)
				}
			}
			o.mu.Unlock()
			if len(page) < n {
				break
			}
			cursor = page[len(page)-1].Seq
		}
		if len(memRows) == 0 || len(recs) == limit {
			return recs, nil
		}
		o.mu.Lock()
		if o.gen != gen {
			o.mu.Unlock()
			continue
		}
		memRows = slices.DeleteFunc(memRows, func(r row) bool { return !o.inMemoryLocked(r.seq) })
		o.mu.Unlock()
		for i := range memRows {
			if len(recs) == limit {
				break
			}
			rec, err := memRows[i].record()
			if err != nil {
				return nil, fmt.Errorf("outbox: %s: %w", what, err)
			}
			recs = append(recs, rec)
		}
		return recs, nil
	}
}

// memRowsLocked copies up to limit unacknowledged records in memory (the
// running commit's, then the buffer's) with seq > after; only alerts if
// alerts is set. o.mu is held.
func (o *Outbox) memRowsLocked(after uint64, limit int, alerts bool) []row {
	var out []row
	for _, rows := range [][]row{o.inflight, o.buf} {
		i, _ := findSeq(rows, after+1)
		for _, r := range rows[i:] {
			if len(out) == limit {
				return out
			}
			if alerts && r.kind != kindAlert {
				continue
			}
			if _, acked := o.ackedInflight[r.seq]; acked {
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

// inMemoryLocked reports whether seq is an unacknowledged record in
// memory. o.mu is held.
func (o *Outbox) inMemoryLocked(seq uint64) bool {
	if _, ok := findSeq(o.inflight, seq); ok {
		_, acked := o.ackedInflight[seq]
		return !acked
	}
	_, ok := findSeq(o.buf, seq)
	return ok
}

// LatestPerSensor returns the newest unacknowledged reading of each sensor,
// committed or buffered, in seq order. It scans the whole table
// (O(Depth)): call it once per reconnection, not per batch.
func (o *Outbox) LatestPerSensor(ctx context.Context) ([]protocol.Record, error) {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return nil, ErrClosed
		}
		gen, committed := o.gen, o.st.committed
		inTable := o.st.rows > int64(len(o.acked))
		var acked []uint64
		if inTable {
			acked = make([]uint64, 0, len(o.acked))
			for seq := range o.acked {
				acked = append(acked, seq)
			}
		}
		// The newest reading in memory of each series; memory is newer
		// than the table.
		newest := map[seriesKey]row{}
		for _, rows := range [][]row{o.inflight, o.buf} {
			for _, r := range rows {
				if _, a := o.ackedInflight[r.seq]; r.kind == kindReading && !a {
					newest[r.series] = r
				}
			}
		}
		o.mu.Unlock()

		var recs []protocol.Record
		if inTable {
			var err error
			if recs, err = o.query(ctx, "latest per sensor", latestSQL, int64(committed), seqList(acked)); err != nil {
				return nil, err
			}
			if o.afterRead != nil {
				o.afterRead()
			}
		}
		o.mu.Lock()
		if o.gen != gen {
			o.mu.Unlock()
			continue
		}
		// Records acknowledged meanwhile: read again (an older reading of
		// that series may be the newest now), or after a few attempts
		// leave them out.
		stale := false
		recs = slices.DeleteFunc(recs, func(r protocol.Record) bool {
			_, a := o.acked[r.Seq]
			stale = stale || a
			return a
		})
		for k, r := range newest {
			if !o.inMemoryLocked(r.seq) {
				stale = true
				delete(newest, k)
			}
		}
		o.mu.Unlock()
		if stale && attempt < 3 {
			continue
		}
		for _, r := range newest {
			rec, err := r.record()
			if err != nil {
				return nil, fmt.Errorf("outbox: latest per sensor: %w", err)
			}
			recs = append(recs, rec)
		}
		slices.SortFunc(recs, func(a, b protocol.Record) int {
			switch {
			case a.Seq < b.Seq:
				return -1
			case a.Seq > b.Seq:
				return 1
			}
			return 0
		})
		// A sensor whose unit changed has two series: keep its newest reading.
		last := make(map[string]uint64, len(recs))
		for _, r := range recs {
			last[r.Sensor] = r.Seq // recs are in seq order
		}
		return slices.DeleteFunc(recs, func(r protocol.Record) bool { return last[r.Sensor] != r.Seq }), nil
	}
}

func (o *Outbox) query(ctx context.Context, what, q string, args ...any) ([]protocol.Record, error) {
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

// Committed returns the greatest committed seq and a channel that is closed
// when a later commit adds records (or the outbox is closed). Records are
// visible to Peek before they are committed: a publisher waits on Appended.
func (o *Outbox) Committed() (uint64, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.st.committed, o.commitCh
}

// Appended returns the last assigned seq and a channel that is closed at the
// next Append (or when the outbox is closed), so the uplink can wait for new
// records instead of polling: Peek(ctx, seq, n) after the channel closed
// returns them.
func (o *Outbox) Appended() (uint64, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.appendCh == nil {
		o.appendCh = make(chan struct{})
	}
	return o.lastSeq, o.appendCh
}
