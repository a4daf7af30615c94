-- OTA firmware rollouts (package hub/ota). Low write volume: hub/ota writes
-- these tables through Store.DB() directly, beside the store's writer.

-- A release: a signed manifest and its artifact. The artifact is stored
-- content-addressed as ota.artifact_dir/<sha256>, its manifest beside it as
-- <sha256>.manifest.json (and verbatim here).
CREATE TABLE ota_releases (
  sha256      TEXT PRIMARY KEY,
  version     TEXT NOT NULL,        -- semver as signed
  target      TEXT NOT NULL,        -- os/arch[/variant][ (board)]
  size        INTEGER NOT NULL,
  kid         TEXT NOT NULL,        -- release key that signed it
  notes       TEXT NOT NULL DEFAULT '',
  created_ms  INTEGER NOT NULL,     -- signing time from the manifest
  uploaded_ms INTEGER NOT NULL,
  manifest    BLOB NOT NULL,        -- the signed envelope, verbatim
  UNIQUE (version, target)
);

-- A rollout of one release to a set of devices in waves.
CREATE TABLE ota_rollouts (
  id                TEXT PRIMARY KEY,
  sha256            TEXT NOT NULL REFERENCES ota_releases(sha256),
  version           TEXT NOT NULL,
  state             TEXT NOT NULL,             -- active | paused | completed | aborted
  reason            TEXT NOT NULL DEFAULT '',  -- why it paused or ended
  waves             TEXT NOT NULL,             -- JSON array as given, e.g. ["5%","25%","100%"]
  wave              INTEGER NOT NULL,          -- current (last started) wave, 1-based
  max_failures      TEXT NOT NULL,             -- "10%" or a count
  accepted_failures INTEGER NOT NULL DEFAULT 0,-- failures an operator accepted by resuming
  allow_downgrade   INTEGER NOT NULL DEFAULT 0,
  selector          TEXT NOT NULL DEFAULT '',
  created_ms        INTEGER NOT NULL,
  updated_ms        INTEGER NOT NULL,
  finished_ms       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ota_rollouts_state ON ota_rollouts(state);

-- Each targeted device's wave and last reported status.
CREATE TABLE ota_rollout_devices (
  rollout     TEXT NOT NULL REFERENCES ota_rollouts(id),
  device      TEXT NOT NULL,
  wave        INTEGER NOT NULL,                -- 1-based
  state       TEXT NOT NULL DEFAULT 'pending', -- pending, then the OTA states of docs/protocol.md
  bytes       INTEGER NOT NULL DEFAULT 0,
  total       INTEGER NOT NULL DEFAULT 0,
  reason      TEXT NOT NULL DEFAULT '',
  fw          TEXT NOT NULL DEFAULT '',
  notified_ms INTEGER NOT NULL DEFAULT 0,
  updated_ms  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (rollout, device)
) WITHOUT ROWID;
CREATE INDEX ota_rollout_devices_device ON ota_rollout_devices(device);
