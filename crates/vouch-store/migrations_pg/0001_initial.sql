-- PostgreSQL dialect of ../migrations (same tables and columns; BIGINT for Unix times, BYTEA for keys).
-- Vouch store, initial schema. Times are Unix seconds. Policies are versioned and never
-- overwritten; attestations are append-only.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    hostname   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    node_name  TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_by    TEXT
);

CREATE TABLE agent_keys (
    id          TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL REFERENCES nodes(id),
    public_key  BYTEA NOT NULL UNIQUE,
    enrolled_at BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE policies (
    id         TEXT NOT NULL,
    version    BIGINT NOT NULL,
    rego       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE reference_values (
    id         BIGSERIAL PRIMARY KEY,
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (kind, key, value)
);

CREATE TABLE workloads (
    id                  TEXT PRIMARY KEY,
    node_id             TEXT NOT NULL REFERENCES nodes(id),
    name                TEXT NOT NULL,
    status              TEXT NOT NULL,
    reason              TEXT NOT NULL,
    last_attested_at    BIGINT,
    last_attestation_id TEXT,
    deadline            BIGINT,
    updated_at          BIGINT NOT NULL
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
    policy_version  BIGINT NOT NULL,
    result          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX attestations_workload ON attestations (workload_id, created_at);

CREATE TABLE used_nonces (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX used_nonces_expiry ON used_nonces (expires_at);
