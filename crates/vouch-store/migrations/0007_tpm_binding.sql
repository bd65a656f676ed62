-- Issue 12: a node's TPM binding is sticky. `ek_key` is the SHA-256 of the EK's public key (its
-- key material, not the encoding of its public area): one EK is bound to one node at a time.
-- `bound_at` is the node's first credential activation: from then on it attests with its TPM,
-- and another EK or AK needs an admin re-enrolment. Revoking a node frees its EK.
ALTER TABLE tpm_keys ADD COLUMN ek_key TEXT;
ALTER TABLE tpm_keys ADD COLUMN bound_at INTEGER;
UPDATE tpm_keys SET bound_at = activated_at WHERE activated_at IS NOT NULL;
CREATE UNIQUE INDEX tpm_keys_bound_ek ON tpm_keys (ek_key) WHERE bound_at IS NOT NULL;

-- Admin re-enrolments (`vouch node reenroll`, `POST /v1/nodes/{id}/tpm/reenroll`): each lets a
-- TPM-bound node enroll another EK or AK until the next credential activation uses it or it
-- expires. Rows are never deleted: they are the record of who moved a node to which TPM, why.
CREATE TABLE tpm_reenrollments (
    id           TEXT PRIMARY KEY,
    node_id      TEXT NOT NULL REFERENCES nodes(id),
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    previous_ek  TEXT,
    previous_ak  TEXT,
    used_at      INTEGER,
    ek_key       TEXT
);
CREATE INDEX tpm_reenrollments_node ON tpm_reenrollments (node_id, created_at);
