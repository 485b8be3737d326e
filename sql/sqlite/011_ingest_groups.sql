-- Group commit of the ingest path (issue 15): how many copies of a message were answered
-- `deduped` after it was stored, counted once per group (+= the group's copies).
ALTER TABLE messages ADD COLUMN deduped_copies INTEGER NOT NULL DEFAULT 0;
