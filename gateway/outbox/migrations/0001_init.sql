-- Sensor name and unit pairs, so that a record stores a small integer
-- instead of repeating the strings (names may be up to 64 bytes long).
-- Rows are only ever added; a gateway has a few dozen.
CREATE TABLE series (
    id     INTEGER PRIMARY KEY,
    sensor TEXT NOT NULL,
    unit   TEXT NOT NULL,
    UNIQUE (sensor, unit)
);

-- Committed records not yet acknowledged by the hub, one row per
-- protocol.Record. seq is the rowid: the table is a B-tree keyed by seq,
-- appended at its right edge, with no secondary index written for readings.
-- A typical reading takes 24 bytes of payload, ~30 with the B-tree's cell
-- overhead.
CREATE TABLE records (
    seq    INTEGER PRIMARY KEY,                  -- per-device sequence number
    kind   INTEGER NOT NULL,                     -- 0 reading, 1 alert, 2 fault (0 and 1 take no payload bytes)
    t      INTEGER NOT NULL,                     -- event time, unix ms (Record.Time)
    series INTEGER NOT NULL REFERENCES series (id),
    value  REAL,                                 -- Record.Value; NULL when absent
    body   BLOB,                                 -- the remaining fields as compact JSON; NULL when none
    lag    INTEGER NOT NULL                      -- the outbox stored the record at t + lag (unix ms); small, so 1-3 bytes
);

-- Alerts are few: a partial index finds them without scanning the readings
-- and costs nothing when a reading is inserted.
CREATE INDEX records_alerts ON records (seq) WHERE kind = 1;

-- One row of counters.
CREATE TABLE meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq   INTEGER NOT NULL, -- seq high-water mark, raised by every transaction that deletes records
    dropped    INTEGER NOT NULL, -- records ever dropped to stay within the bounds
    un_first   INTEGER NOT NULL, -- dropped and not yet reported: first seq,
    un_last    INTEGER NOT NULL, --   last seq,
    un_count   INTEGER NOT NULL, --   number of records (0: nothing to report),
    un_reasons TEXT    NOT NULL  --   bounds that caused it, comma-separated
);
INSERT INTO meta VALUES (1, 0, 0, 0, 0, 0, '');
