-- Issue 16 item 5: fleet anomaly flags. `anomalies` holds one row per flag (its id is the
-- SHA-256 of kind, group, node and subject, so every replica raising the same flag updates the
-- same row); `anomaly_seen` is each workload group's baseline, the 16-byte keys of the
-- measurements it has seen, from which a replica that starts rebuilds the same detector.
CREATE TABLE anomalies (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    grp         TEXT NOT NULL,
    node_id     TEXT NOT NULL,
    workload_id TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    count       BIGINT NOT NULL
);
CREATE INDEX anomalies_last_seen ON anomalies (last_seen);
CREATE TABLE anomaly_seen (
    grp        TEXT NOT NULL,
    mkey       TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (grp, mkey)
);
