-- Log records land here first: a rowid table without secondary indexes, so
-- the group commit that precedes a PUBACK writes one or two pages whatever
-- the number of devices. The store moves them into log (deduplicated on
-- (device_id, seq), indexed) in large batches, and before every read of log.
CREATE TABLE log_intake (
  device_id INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  kind      TEXT NOT NULL,
  t_ms      INTEGER NOT NULL,
  sensor    TEXT NOT NULL,
  value     REAL,
  body      TEXT NOT NULL,
  recv_ms   INTEGER NOT NULL
);
