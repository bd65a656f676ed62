-- The revocation log: one signed record per revocation, numbered by a gap-free epoch so a
-- relying party can tell whether it holds every record up to a signed head. `record` is the
-- compact JWS that verifiers gossip; the other columns are its claims, for lookups.
CREATE TABLE revocation_log (
    epoch      INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    record     TEXT NOT NULL,
    UNIQUE (kind, target)
);
