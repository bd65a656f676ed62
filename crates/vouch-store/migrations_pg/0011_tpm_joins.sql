-- Issue 14: TPM joins (zero-touch `tpm` node attestation) waiting for their credential
-- activation. Nothing of the node exists until the activation succeeds: a row is taken (deleted)
-- by the first activation attempt on any replica, replaced by a newer join of the same EK, and
-- dropped once expired. The verifier holds at most a configured number open.
CREATE TABLE tpm_joins (
    id                TEXT PRIMARY KEY,
    ek_key            TEXT NOT NULL UNIQUE,
    node_id           TEXT NOT NULL,
    public_key        BYTEA NOT NULL,
    hostname          TEXT NOT NULL,
    ek_public         BYTEA NOT NULL,
    ek_cert           BYTEA NOT NULL,
    ek_issuer         TEXT NOT NULL,
    ak_public         BYTEA NOT NULL,
    ak_qualified_name BYTEA NOT NULL,
    secret_hash       TEXT NOT NULL,
    expires_at        BIGINT NOT NULL
);
CREATE INDEX tpm_joins_expires ON tpm_joins (expires_at);
