// Package outbox is the gateway's durable outbox: every reading, alert and
// fault gets the device's next sequence number, is kept until the hub
// acknowledged it (PUBACK), and is committed to SQLite unless the hub
// acknowledged it first. This is the gateway half of design invariant 2
// ("nothing lost, nothing doubled"), with the trade-off described under
// "Durability" below: a record may be published from memory, before it is
// on disk; a journal in the page cache keeps it across a crash of the
// process.
//
// # Sequence numbers
//
// The outbox keeps one per-device sequence, strictly increasing across
// restarts, crashes and power cuts: a seq that was ever handed out (by
// Append) is never assigned again, whether or not its record was ever
// written, acknowledged or dropped.
//
// Seqs are reserved ahead in blocks: meta.last_seq is the reserved mark,
// and Append hands out a seq only if it is at most the mark as committed
// (fsynced). When fewer than reserveLow (512) reserved seqs are left, the
// next commit raises the mark to the last seq + reserveBlock (1024) in its
// own transaction; below 256, the background goroutine does it in a small
// transaction of its own; Append waits for a reservation only if none is
// left. So a reservation costs one small transaction per 1024 records at
// most. Open continues after max(meta.last_seq, greatest stored seq), or,
// after a crash of the process, right after the last seq the journal
// accounts for (it holds every seq handed out since the last commit).
// Close lowers the mark to the last seq handed out, so a clean restart
// continues without a gap; after a power cut the next seq is above the
// reservation, and the hub may see a gap (the seqs of records lost in the
// crash window, and reserved seqs never handed out), never a clash.
//
// The reservation reuses meta.last_seq (formerly "raised to the last
// committed seq by every transaction that deletes records"), so the schema
// is unchanged: a firmware that was rolled back opens the outbox and, since
// it too continues after max(last_seq, greatest stored seq), never reuses a
// seq either.
//
// # Durability
//
// Writes are grouped to spare the SD card. Append buffers the record in
// memory and writes it to the journal (journal.go): one write(2) to a file
// that is emptied after each commit, so it lives in the page cache and
// almost never reaches the disk, but survives the process. The buffer is
// committed in one transaction at most
// FlushInterval (default 1 s) after its first record, or as soon as
// FlushRecords (default 256) unacknowledged records wait (the Append that
// finds the buffer full commits it first), or by Flush, AppendSync and
// Close. Commits run with synchronous=FULL: the WAL is fsynced before a
// commit returns, so a committed record survives a process crash, a kernel
// crash and a power cut (on storage that honours fsync).
//
// The uplink publishes from the buffer: Peek, PendingAlerts and
// LatestPerSensor return buffered records too (Appended tells when there
// are new ones), so a reading reaches the hub without waiting for a
// commit. Ack writes nothing: an acknowledged record still in the buffer
// is dropped from it and never written at all (at sensor rates, on a
// working connection, that is almost every record); the row of an
// acknowledged stored record is deleted by the next commit, in the same
// transaction as that commit's inserts (at most one transaction, one
// fsync, per FlushInterval), and by Flush and Close. A record the hub
// acknowledged is never returned again by the read methods of this
// process.
//
//   - What a crash of the process (kill -9, panic, OOM killer) loses:
//     nothing. Open reads the journal, which the kernel kept: the buffered
//     records come back (Stats.Recovered) and are committed, and the seqs
//     continue right after the last one handed out, without a gap. A
//     record acknowledged before the crash may come back too and is sent
//     again (the hub keeps each (device, seq) once).
//   - What a power cut or kernel crash can lose: the unacknowledged records
//     of the buffer, appended in the last FlushInterval (at most
//     FlushRecords of them) and not committed yet, that had not reached the
//     hub yet, unless the journal reached the disk (the journal of an
//     earlier boot is used for what it holds). A caller that needs a record
//     durable now (an alert) uses AppendSync, or Flush after Append. Their
//     seqs are not assigned again (see above): the hub sees a gap, and it
//     is reported: meta.floor (raised by every commit that writes meta)
//     marks a seq up to which every record is stored or acknowledged; Open
//     adds (max(floor, greatest stored or journalled seq), reserved mark]
//     to the unreported range with reason "crash" (a superset: it includes
//     delivered records and seqs never handed out), and the DropNotice
//     record reports it, so no record is lost silently. The same happens
//     after a crash while the journal was off (a failed write, see
//     Stats.JournalErr). A clean Close leaves no such range.
//   - What it cannot lose or break: a committed, unacknowledged record; the
//     sequence (no seq is ever reused, so a new record is never discarded
//     by the hub as a duplicate of one published before the crash).
//   - What it may double: a record acknowledged after it was committed,
//     whose delete was not committed before the crash, is published again
//     after the restart (at-least-once). The hub stores each (device, seq)
//     at most once, so the copy is harmless.
//   - A committed record is removed only after the hub acknowledged it, or
//     by the bounds (MaxRecords, MaxBytes, MaxAge), which drop the oldest
//     first, count the drops and keep the dropped range for a report.
//
// Why not synchronous=NORMAL, which skips the fsync at each commit: after a
// power cut, NORMAL may roll back transactions that had committed,
// reservations included; a rolled-back reservation would let seqs that had
// already been published be assigned again, and the hub, which stores
// (device, seq) at most once, would discard the new readings as
// duplicates.
//
// # Disk writes
//
// A reading takes about 30 bytes in its B-tree page: the sensor name and
// unit are stored once in the series table, the storage time as a small
// offset from the event time. WAL mode writes each page twice (WAL, then
// the database at checkpoint). Measured with TestBytesPerReading,
// BenchmarkAppendFlush and BenchmarkConnected on ext4 (bytes that reached
// the block layer per reading, /proc/self/io write_bytes, the final
// checkpoint included).
//
// During an outage (nothing acknowledged) every reading is written:
//
//	readings per commit       1      4     32    256 (a backlog burst)
//	synchronous=FULL (used)  5.2k   1.4k   280    90
//	synchronous=NORMAL       1.1k   380    150    74
//
// At sensor rates the commit, not the row, costs: each fsync writes at least
// one 4 KiB block. A longer FlushInterval (more readings per commit) saves
// the SD card, at the price of a larger loss window.
//
// Connected, a reading is written only if its PUBACK has not arrived when
// the flush timer fires; the next commit then deletes it. With 200
// readings per FlushInterval (20 sensors at 10 Hz) and 2 records in flight
// at every flush: 29 bytes per reading; with none in flight, only the
// reservations are written: 7 bytes per reading.
//
// # Publishing after an outage
//
// The uplink sends, in this order: PendingAlerts (every unacknowledged
// alert transition, oldest first, so the hub learns what is active and what
// cleared while it was away), then LatestPerSensor (the newest
// unacknowledged reading of each sensor), then the backlog with Peek (or
// Pending, committed records only) at a capped rate, calling Ack after
// each PUBACK, while new records (Peek after the seq Appended returned at
// the start) go out as they are appended. Records acknowledged in an
// earlier phase are gone from the later ones; the hub stores each (device,
// seq) at most once, so a record sent twice around a reconnect is
// harmless. A read returns every unacknowledged record in a seq range, so a
// cursor (afterSeq) never skips a record.
//
// # Bounds and drops
//
// When a commit leaves more than MaxRecords stored unacknowledged records,
// more than MaxBytes (estimated, see Stats.Bytes) or records stored longer
// than MaxAge ago, the oldest records are deleted in the same transaction
// (after the acknowledged ones), whether or not they were already sent.
// Stats.Dropped counts them (persisted) and Stats.Unreported holds the
// dropped range until it is reported: with Options.DropNotice the outbox
// appends a record describing it (e.g. a fault) and clears the range in the
// transaction that commits that record, or, if the hub acknowledged the
// record while it was still buffered, in the next commit. So every drop is
// reported, even across crashes, and once, unless a crash comes between the
// acknowledgement of a buffered notice and the next commit (then it is
// reported again after the restart).
//
// # Full disk
//
// A commit that fails because the disk is full returns an error wrapping
// ErrDiskFull ("outbox: disk full: ..."); the transaction is rolled back, the
// records committed before are intact, and the failed batch stays in memory
// (less what the hub acknowledged meanwhile) and is retried by the next
// Flush, Append (which returns the error and does not accept its record
// while the retry fails) or timer tick. Buffered and stored records can
// still be published and acknowledged. Open succeeds on a full disk (the
// error is in Stats.FlushErr), so that the stored records can be sent.
package outbox
