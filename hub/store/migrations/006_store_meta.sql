-- Small store-wide facts, e.g. the last intake journal generation moved
-- into log (intake_journal_gen).
CREATE TABLE store_meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
