-- floor: every seq up to it is stored or was acknowledged by the hub (raised
-- by commits that write meta). After a crash, the seqs in (floor, last_seq]
-- may have been assigned in memory and lost: the outbox reports that range.
ALTER TABLE meta ADD COLUMN floor INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET floor = last_seq;
