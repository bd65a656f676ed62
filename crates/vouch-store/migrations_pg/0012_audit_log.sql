-- Issue 16 item 3: the audit log, an append-only Merkle-tree log (RFC 9162 hashing) of every
-- decision, enrollment, change and revocation. `entry` is the exact JSON that is hashed
-- (leaf_hash = SHA-256(0x00 || entry)); `seq` is gap-free from 0, allocated by the one-row
-- counter audit_size in the appending transaction (its row lock orders concurrent replicas),
-- so concurrent writers cannot fork it.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL,
    entry      TEXT NOT NULL,
    leaf_hash  BYTEA NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE TABLE audit_size (
    id   BIGINT PRIMARY KEY CHECK (id = 0),
    size BIGINT NOT NULL
);
INSERT INTO audit_size (id, size) VALUES (0, 0);
-- Rows are never changed or deleted (the tree would no longer match its signed heads).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
