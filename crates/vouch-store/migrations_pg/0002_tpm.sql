-- TPM enrollment of a node: its EK (and certificate), the AK bound to it by credential
-- activation, and the last accepted quote clock (resetCount / restartCount / clock) of the AK.
CREATE TABLE tpm_keys (
    node_id           TEXT PRIMARY KEY REFERENCES nodes(id),
    ek_public         BYTEA NOT NULL,
    ek_cert           BYTEA,
    ek_issuer         TEXT,
    ak_public         BYTEA NOT NULL,
    ak_qualified_name BYTEA NOT NULL,
    challenge_hash    TEXT,
    challenge_expires BIGINT,
    activated_at      BIGINT,
    last_clock        TEXT,
    created_at        BIGINT NOT NULL
);
