-- Registration-entry change log (issue 13 item 5): one row per change, at the entries revision
-- the change made, so a reader at revision R (an agent, a replica's cache) reads only what
-- changed after R. `entry` is the added entry (JSON) or NULL for a deletion (a tombstone).
-- Rows at or below `entries_log_floor` (settings) are pruned or predate the log: a reader older
-- than the floor reads every entry again.
CREATE TABLE entries_log (
    revision BIGINT PRIMARY KEY,
    entry_id TEXT NOT NULL,
    entry    TEXT
);
INSERT INTO settings (key, value)
    SELECT 'entries_log_floor', value FROM settings WHERE key = 'entries_revision';
