-- Attestation claims stored deduplicated (issue 13, durable writes): the large top-level
-- members of a claims object (`files`, `processes`, `listening`, `packages`) are stored once
-- here under the lowercase hex SHA-256 of their JSON, and `attestations.claims_parts` names the
-- ones taken out of that record's `claims` (`{"packages": "<sha256>", …}`). NULL: the claims
-- are whole (every row written before this migration). Rows here are never deleted.
CREATE TABLE claim_parts (
    sha256 TEXT PRIMARY KEY,
    body   TEXT NOT NULL
);
ALTER TABLE attestations ADD COLUMN claims_parts TEXT;
