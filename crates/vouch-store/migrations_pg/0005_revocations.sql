-- Revocations: what was revoked, by whom, when and why. A revoked node's agent keys are
-- marked revoked too, so nothing signed by them is accepted again.
CREATE TABLE revocations (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    target     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX revocations_target ON revocations (kind, target);
