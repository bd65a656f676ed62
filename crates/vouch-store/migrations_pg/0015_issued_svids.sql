-- Issue 15 part 7: the X.509-SVIDs this verifier issued, so that `POST /v1/timestamp` stamps a
-- signature only for the SVID issued to the very workload whose result is presented. `sha256`
-- is the lower-case hex SHA-256 of the certificate's DER; `serial` its canonical revocation
-- target (lower-case hex, no leading zeros); `workload` the workload id (`<node>/<name>`).
-- Rows are pruned once `not_after` has passed (the sweeper, bounded per pass).
CREATE TABLE issued_svids (
    sha256     TEXT PRIMARY KEY,
    serial     TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    workload   TEXT NOT NULL,
    spiffe_id  TEXT NOT NULL,
    not_after  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX issued_svids_not_after ON issued_svids (not_after);
