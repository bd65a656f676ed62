-- Registration entries: a SPIFFE ID for workloads carrying all the entry's selectors.
CREATE TABLE entries (
    id         TEXT PRIMARY KEY,
    spiffe_id  TEXT NOT NULL,
    selectors  TEXT NOT NULL,
    ttl        BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (spiffe_id, selectors)
);
