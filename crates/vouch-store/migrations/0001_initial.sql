-- Vouch store, initial schema. Times are Unix seconds. Policies are versioned and never
-- overwritten; attestations are append-only.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    hostname   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    node_name  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    used_by    TEXT
);

CREATE TABLE agent_keys (
    id          TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    public_key  BLOB NOT NULL UNIQUE,
    enrolled_at INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE policies (
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    rego       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE reference_values (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (kind, key, value)
);

CREATE TABLE workloads (
    id                  TEXT PRIMARY KEY,
    node_id             TEXT NOT NULL REFERENCES nodes(id),
    name                TEXT NOT NULL,
    status              TEXT NOT NULL,
    reason              TEXT NOT NULL,
    last_attested_at    INTEGER,
    last_attestation_id TEXT,
    deadline            INTEGER,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX workloads_deadline ON workloads (deadline);

CREATE TABLE attestations (
    id              TEXT PRIMARY KEY,
    workload_id     TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    evidence_kind   TEXT NOT NULL,
    evidence_sha256 TEXT NOT NULL,
    claims          TEXT NOT NULL,
    status          TEXT NOT NULL,
    trust_vector    TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    policy_id       TEXT NOT NULL,
    policy_version  INTEGER NOT NULL,
    result          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX attestations_workload ON attestations (workload_id, created_at);

CREATE TABLE used_nonces (
    id         TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE INDEX used_nonces_expiry ON used_nonces (expires_at);
