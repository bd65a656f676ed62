-- Issue 14: nodes that joined without a join token, by what their platform signed about them
-- (a Kubernetes projected service-account token, a cloud instance identity document). The node
-- id is derived from the method's stable key, so the same machine is the same node each time.
-- `selectors` (a JSON array) is the verifier's own word about the node, from the document.
CREATE TABLE node_attestations (
    node_id     TEXT PRIMARY KEY REFERENCES nodes(id),
    method      TEXT NOT NULL,
    node_key    TEXT NOT NULL,
    selectors   TEXT NOT NULL,
    first_at    INTEGER NOT NULL,
    attested_at INTEGER NOT NULL,
    attestations INTEGER NOT NULL
);
