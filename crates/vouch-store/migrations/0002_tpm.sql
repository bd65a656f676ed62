-- TPM enrollment of a node: its EK (and certificate), the AK bound to it by credential
-- activation, and the last accepted quote clock (resetCount / restartCount / clock) of the AK.
CREATE TABLE tpm_keys (
    node_id           TEXT PRIMARY KEY REFERENCES nodes(id),
    ek_public         BLOB NOT NULL,
    ek_cert           BLOB,
    ek_issuer         TEXT,
    ak_public         BLOB NOT NULL,
    ak_qualified_name BLOB NOT NULL,
    challenge_hash    TEXT,
    challenge_expires INTEGER,
    activated_at      INTEGER,
    last_clock        TEXT,
    created_at        INTEGER NOT NULL
);
