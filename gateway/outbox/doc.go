// Package outbox is the gateway's durable outbox: every reading, alert and
// fault gets the device's next sequence number and is stored in SQLite before
// the uplink may publish it; it is deleted only when the hub acknowledged it
// (PUBACK). This is the gateway half of design invariant 2 ("nothing lost,
// nothing doubled").
//
// # Sequence numbers
//
// The outbox keeps one per-device sequence: 1, 2, 3, ... strictly increasing
// across restarts, crashes and power cuts. A number that was ever committed is
// never assigned again, even after its record was acknowledged or dropped.
// The high-water mark is stored without an extra write per commit: it is the
// larger of the greatest seq in the records table and meta.last_seq, and
// every transaction that deletes records (Ack, drops) also raises
// meta.last_seq to the last committed seq. Committed seqs have no gaps: they
// are committed in order, in batches.
//
// # Durability and the SD card
//
// Writes are grouped to spare the SD card. Append only buffers the record in
// memory; the buffer is committed in one transaction at most FlushInterval
// (default 1 s) after its first record, or as soon as FlushRecords (default
// 256) records are waiting (the Append that finds the buffer full commits
// it first), or by Flush, AppendSync and Close.
//
// Commits run with synchronous=FULL: the WAL is fsynced before a commit
// returns, so a committed record survives a process crash, a kernel crash
// and a power cut (on storage that honours fsync).
//
//   - What a crash or power cut can lose: at most the unflushed buffer, the
//     records appended in the last FlushInterval (and at most FlushRecords
//     of them) whose Append returned but which were not committed yet.
//     Their seqs were never committed, so after a restart the same numbers
//     are assigned to new records: that is safe because they were never
//     published (next point). A caller that needs a record durable now (an
//     alert) uses AppendSync, or Flush after Append.
//   - A record is never published before it is committed: the read methods
//     (Pending, PendingAlerts, LatestPerSensor) return committed rows only;
//     the buffer is invisible to them.
//   - A committed record is removed only by Ack (after the hub's PUBACK) or
//     by the bounds (MaxRecords, MaxBytes, MaxAge), which drop the oldest
//     first, count the drops and keep the dropped range for a report.
//
// Why not synchronous=NORMAL, which skips the fsync at each commit: after a
// power cut, NORMAL may roll back transactions that had committed. If their
// records had been published and acknowledged, their seqs would be assigned
// again to new readings, and the hub, which stores (device, seq) at most once,
// would discard those new readings as duplicates.
//
// # Disk writes
//
// A reading takes about 30 bytes in its B-tree page: the sensor name and unit
// are stored once in the series table, the storage time as a small offset
// from the event time. WAL mode writes each page twice (WAL, then the
// database at checkpoint). Measured with TestBytesPerReading and
// BenchmarkAppendFlush on ext4 (bytes that reached the block layer per
// reading, /proc/self/io write_bytes, the final checkpoint included):
//
//	readings per commit       1      4     32    256 (a backlog burst)
//	synchronous=FULL (used)  5.2k   1.4k   280    89
//	synchronous=NORMAL       1.2k   380    150    72
//
// At sensor rates the commit, not the row, costs: each fsync writes at least
// one 4 KiB block. A longer FlushInterval (more readings per commit) is the
// knob that saves the SD card, at the price of a larger loss window.
//
// # Publishing after an outage
//
// The uplink sends, in this order: PendingAlerts (every unacknowledged
// alert transition, oldest first, so the hub learns what is active and what
// cleared while it was away), then LatestPerSensor (the newest reading of
// each sensor), then the backlog with Pending(afterSeq, limit) at a capped
// rate, calling Ack after each PUBACK. Records acknowledged in an earlier
// phase are gone from the later ones; the hub stores each (device, seq) at
// most once, so a record sent twice around a reconnect is harmless.
// Commits happen in seq order, so a backlog cursor (afterSeq) never skips a
// record; Committed returns a channel to wait on for the next commit.
//
// # Bounds and drops
//
// When a commit leaves more than MaxRecords records, more than MaxBytes
// (estimated, see Stats.Bytes) or records stored longer than MaxAge ago, the
// oldest records are deleted in the same transaction, whether or not they
// were already sent. Stats.Dropped counts them (persisted) and
// Stats.Unreported holds the dropped range until it is reported: with
// Options.DropNotice the outbox appends a record describing it (e.g. a fault)
// and clears the range in the transaction that commits that record, so every
// drop is reported exactly once, even across crashes.
//
// # Full disk
//
// A commit that fails because the disk is full returns an error wrapping
// ErrDiskFull ("outbox: disk full: ..."); the transaction is rolled back, the
// records committed before are intact, and the failed batch stays in memory
// and is retried by the next Flush, Append (which returns the error and does
// not accept its record while the retry fails) or timer tick.
package outbox
