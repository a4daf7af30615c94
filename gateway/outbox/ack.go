package outbox

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/outpost-iot/outpost/internal/sqlitex"
)

// Ack records that the hub acknowledged (PUBACK) the records with the given
// seqs. It writes nothing to disk:
//
//   - a record still in the buffer is dropped from it and is never written
//     (Stats.AckedUnwritten counts these);
//   - a stored record (or one a running commit is writing) is hidden from
//     the read methods at once and its row is deleted by the next commit,
//     at most FlushInterval later, in the same transaction as that
//     commit's inserts (Flush and Close apply the deletes too). If the
//     process dies before, the record is published again after the restart;
//     the hub stores each (device, seq) at most once.
//
// Seqs already acknowledged or dropped are ignored; a seq that was never
// assigned is an error, and then nothing is acknowledged. Ack may read the
// database (to learn whether a stored record is still there).
func (o *Outbox) Ack(ctx context.Context, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	o.amu.Lock()
	defer o.amu.Unlock()
	for {
		// Which seqs may have a row: committed, not below the table's first
		// row, not acknowledged already.
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		var cands []uint64
		for _, seq := range seqs {
			if seq == 0 || seq > o.lastSeq {
				last := o.lastSeq
				o.mu.Unlock()
				return fmt.Errorf("outbox: ack seq %d: not an assigned seq (last assigned is %d)", seq, last)
			}
			if _, ok := o.acked[seq]; !ok && o.st.oldestSeq != 0 && seq >= o.st.oldestSeq && seq <= o.st.committed {
				cands = append(cands, seq)
			}
		}
		gen := o.gen
		o.mu.Unlock()

		var stored map[uint64]int64
		if len(cands) > 0 {
			var err error
			if stored, err = o.lookup(ctx, cands); err != nil {
				return fmt.Errorf("outbox: ack %d records: %w", len(seqs), err)
			}
			if o.afterRead != nil {
				o.afterRead()
			}
		}

		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		if o.gen != gen {
			// A commit changed the table since the lookup: look again.
			o.mu.Unlock()
			continue
		}
		newDeletes := o.ackLocked(seqs, stored)
		o.mu.Unlock()
		if newDeletes {
			signal(o.kick)
		}
		o.refreshOldest(ctx)
		return nil
	}
}

// ackLocked applies an Ack: stored are the committed seqs among seqs that
// have a row (seq → size), read at the current generation. It reports
// whether stored records now wait to be deleted. o.mu is held.
func (o *Outbox) ackLocked(seqs []uint64, stored map[uint64]int64) (newDeletes bool) {
	var unbuffer map[uint64]bool
	for _, seq := range seqs {
		if seq <= o.st.committed {
			if size, ok := stored[seq]; ok {
				if _, dup := o.acked[seq]; !dup {
					o.acked[seq] = size
					o.ackedBytes += size
					newDeletes = true
				}
			}
			continue // otherwise: acknowledged before, or dropped
		}
		if i, ok := findSeq(o.inflight, seq); ok {
			if _, dup := o.ackedInflight[seq]; !dup {
				size := o.inflight[i].size()
				o.ackedInflight[seq] = size
				o.ackedInflightBytes += size
			}
			continue
		}
		if _, ok := findSeq(o.buf, seq); ok {
			if unbuffer == nil {
				unbuffer = make(map[uint64]bool)
			}
			unbuffer[seq] = true
		}
	}
	if len(unbuffer) > 0 {
		o.buf = slices.DeleteFunc(o.buf, func(r row) bool {
			if !unbuffer[r.seq] {
				return false
			}
			o.bufBytes -= r.size()
			o.ackedUnwritten++
			if r.notice {
				// The hub has the drop report: the next commit marks the
				// range reported in meta.
				o.noticeAcked = true
				newDeletes = true
			}
			return true
		})
	}
	return newDeletes
}

// findSeq finds seq in rows, which are in seq order.
func findSeq(rows []row, seq uint64) (int, bool) {
	return slices.BinarySearchFunc(rows, seq, func(r row, seq uint64) int {
		switch {
		case r.seq < seq:
			return -1
		case r.seq > seq:
			return 1
		}
		return 0
	})
}

// lookup returns which of seqs have a row in the table, with their sizes.
func (o *Outbox) lookup(ctx context.Context, seqs []uint64) (map[uint64]int64, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT seq, `+sizeSQL+` FROM records WHERE seq IN (SELECT value FROM json_each(?))`, seqList(seqs))
	if err != nil {
		return nil, sqlitex.Classify(err)
	}
	defer func() { _ = rows.Close() }() // rows.Err below reports read errors
	found := make(map[uint64]int64, len(seqs))
	for rows.Next() {
		var seq, size int64
		if err := rows.Scan(&seq, &size); err != nil {
			return nil, err
		}
		found[uint64(seq)] = size
	}
	return found, sqlitex.Classify(rows.Err())
}

// seqList formats seqs as a JSON array, for json_each.
func seqList(seqs []uint64) string {
	b := make([]byte, 0, 2+8*len(seqs))
	b = append(b, '[')
	for i, seq := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, seq, 10)
	}
	return string(append(b, ']'))
}

// oldestPage is how many rows refreshOldest reads at a time.
const oldestPage = 256

// refreshOldest finds the table's oldest unacknowledged row (for Stats) when
// an Ack or a commit made the known one stale. A read error leaves it
// unknown (Stats then reports the table's first row) until the next call.
func (o *Outbox) refreshOldest(ctx context.Context) {
	for {
		o.mu.Lock()
		if o.st.rows == int64(len(o.acked)) {
			// Every stored row is acknowledged (or there is none).
			o.oldest, o.scanFrom = rowRef{}, o.st.committed+1
			o.mu.Unlock()
			return
		}
		if _, acked := o.acked[o.oldest.seq]; o.oldest.seq != 0 && o.oldest.seq >= o.st.oldestSeq && !acked {
			o.mu.Unlock()
			return
		}
		gen, from, to := o.gen, max(o.scanFrom, o.st.oldestSeq), o.st.committed
		o.mu.Unlock()

		page, err := o.readRefs(ctx, from, to)
		if err != nil {
			o.mu.Lock()
			o.oldest = rowRef{}
			o.mu.Unlock()
			return
		}
		o.mu.Lock()
		if o.gen != gen {
			o.mu.Unlock()
			continue // a commit changed the table: read again
		}
		found := false
		for _, r := range page {
			if _, acked := o.acked[r.seq]; !acked {
				o.oldest, o.scanFrom, found = r, r.seq, true
				break
			}
		}
		switch {
		case found:
		case len(page) == oldestPage:
			o.scanFrom = page[len(page)-1].seq + 1 // all acknowledged: read on
		default:
			o.oldest, o.scanFrom = rowRef{}, to+1 // not found (cannot happen): unknown
			found = true
		}
		o.mu.Unlock()
		if found {
			return
		}
	}
}

// readRefs reads the seq and storage time of up to oldestPage rows with seq
// in from..to, in seq order.
func (o *Outbox) readRefs(ctx context.Context, from, to uint64) ([]rowRef, error) {
	rows, err := o.db.QueryContext(ctx, `SELECT seq, t + lag FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`, int64(from), int64(to), oldestPage)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }() // rows.Err below reports read errors
	var page []rowRef
	for rows.Next() {
		var seq, added int64
		if err := rows.Scan(&seq, &added); err != nil {
			return nil, err
		}
		page = append(page, rowRef{uint64(seq), added})
	}
	return page, rows.Err()
}
