CREATE TABLE devices (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  created_ms    INTEGER NOT NULL,
  labels        TEXT NOT NULL DEFAULT '{}',
  state         TEXT NOT NULL DEFAULT 'offline',
  state_since_ms INTEGER NOT NULL DEFAULT 0,
  reason        TEXT NOT NULL DEFAULT '',
  epoch         INTEGER NOT NULL DEFAULT 0,
  last_hb_ms    INTEGER NOT NULL DEFAULT 0,
  hb_interval_s INTEGER NOT NULL DEFAULT 0,
  firmware      TEXT NOT NULL DEFAULT '',
  remote        TEXT NOT NULL DEFAULT '',
  token_exp_ms  INTEGER NOT NULL DEFAULT 0,
  last_seq      INTEGER NOT NULL DEFAULT 0,
  heartbeat     TEXT NOT NULL DEFAULT ''
);

CREATE TABLE presence (
  device_id INTEGER NOT NULL REFERENCES devices(id),
  t_ms      INTEGER NOT NULL,
  state     TEXT NOT NULL,
  reason    TEXT NOT NULL,
  epoch     INTEGER NOT NULL,
  remote    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX presence_device_t ON presence(device_id, t_ms);

-- A device's append-only log: readings, alerts and faults, unique on (device, seq).
CREATE TABLE log (
  device_id INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  kind      TEXT NOT NULL,
  t_ms      INTEGER NOT NULL,
  sensor    TEXT NOT NULL,
  value     REAL,
  body      TEXT NOT NULL,
  recv_ms   INTEGER NOT NULL,
  PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
-- Time-range queries for charts.
CREATE INDEX log_sensor_t ON log(device_id, sensor, t_ms) WHERE kind = 'reading';
-- Retention by age.
CREATE INDEX log_recv ON log(recv_ms);

CREATE TABLE tokens (
  jti        TEXT PRIMARY KEY,
  device     TEXT NOT NULL,
  acl        TEXT NOT NULL,
  issued_ms  INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  revoked_ms INTEGER
);
CREATE INDEX tokens_device ON tokens(device);

CREATE TABLE alerts (
  device_id   INTEGER NOT NULL,
  rule        TEXT NOT NULL,
  sensor      TEXT NOT NULL,
  state       TEXT NOT NULL,
  severity    TEXT NOT NULL,
  value       REAL NOT NULL,
  message     TEXT NOT NULL,
  raised_ms   INTEGER NOT NULL,
  cleared_ms  INTEGER,
  seq         INTEGER NOT NULL,
  acked_ms    INTEGER,
  acked_by    TEXT,
  PRIMARY KEY (device_id, rule, sensor, raised_ms)
);
CREATE INDEX alerts_state ON alerts(state, raised_ms);
