-- Issue 17 item 4: secrets released only to attested workloads. `sealed` is the secret
-- encrypted under the verifier's at-rest key (data_dir/keys/secrets.key, AES-256-GCM, the name
-- as associated data): the database never holds it in the clear. `policy` is Rego in package
-- vouch.secret; `version` moves by one at every put.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    sealed     BYTEA NOT NULL,
    policy     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
