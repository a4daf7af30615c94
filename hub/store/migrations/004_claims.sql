-- Provisioning by claim (docs/protocol.md, "Claiming"). A claim is a
-- one-time, short-lived claim token's record (never the token itself).
CREATE TABLE claims (
  id         TEXT PRIMARY KEY,          -- the claim token's jti
  labels     TEXT NOT NULL DEFAULT '{}',-- given to each device it registers
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  uses       INTEGER NOT NULL,          -- how many device ids it may register
  revoked_ms INTEGER
);

-- Each device id a claim was bound to, at its first announcement.
CREATE TABLE claim_devices (
  claim_id   TEXT NOT NULL REFERENCES claims(id),
  device     TEXT NOT NULL,
  state      TEXT NOT NULL,             -- pending | accepted | rejected
  firmware   TEXT NOT NULL DEFAULT '',
  board      TEXT NOT NULL DEFAULT '',
  arch       TEXT NOT NULL DEFAULT '',
  remote     TEXT NOT NULL DEFAULT '',
  used_ms    INTEGER NOT NULL,          -- first announcement (the binding)
  seen_ms    INTEGER NOT NULL,          -- last announcement
  decided_ms INTEGER NOT NULL DEFAULT 0,-- accepted or rejected
  PRIMARY KEY (claim_id, device)
) WITHOUT ROWID;
CREATE INDEX claim_devices_device ON claim_devices(device, state);
