-- The audit ledger (owned by the consent crate, `consent::ledger`): an append-only record
-- of every decision and event. Each process that writes is a writer with a chain of its
-- own (so replicas never wait for each other): its records are numbered 1, 2, 3… and each
-- carries the SHA-256 of its own contents and of the record before it (hex; the first
-- record follows 64 zeros). Every so many records or seconds, and when the writer stops,
-- a checkpoint signs the head of the chain with the ledger's Ed25519 key (derived from
-- the server's secret key; `warrant audit verify` checks every chain and signature).
-- Retention removes a chain's oldest records up to a checkpoint, which is kept: the chain
-- then starts after that signed record. Instants are Unix microseconds.

CREATE TABLE consent_ledger_writers (
    writer       TEXT PRIMARY KEY,         -- a UUID v7, one per process start
    label        TEXT NOT NULL,            -- host and process id, for people
    key_id       TEXT NOT NULL,            -- the checkpoint key's id
    started_at   BIGINT NOT NULL,
    durable_seq  BIGINT NOT NULL,          -- every record up to here was synced to disk
    pruned_seq   BIGINT NOT NULL DEFAULT 0, -- records up to here were removed by retention
    pruned_hash  TEXT,                     -- the hash of that record (its checkpoint is kept)
    closed_at    BIGINT                    -- when it stopped cleanly
);

CREATE TABLE consent_ledger_records (
    writer     TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,              -- 'call', 'call.outcome', 'ledger.opened', …
    user_id    TEXT,                       -- the person
    agent      TEXT,                       -- the agent (OAuth client id)
    upstream   TEXT,
    tool       TEXT,
    decision   TEXT,                       -- 'allow' / 'deny'
    risk       TEXT,
    detail     TEXT NOT NULL,              -- JSON: the reason, the chain, sizes, …
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (writer, seq)
);
-- Each index is another page written with every record: only the time, for ranges.
CREATE INDEX consent_ledger_records_at ON consent_ledger_records (at);

CREATE TABLE consent_ledger_checkpoints (
    writer     TEXT NOT NULL,
    seq        BIGINT NOT NULL,            -- the record signed (the head then)
    hash       TEXT NOT NULL,              -- that record's hash
    at         BIGINT NOT NULL,
    key_id     TEXT NOT NULL,
    signature  TEXT NOT NULL,              -- Ed25519, hex
    PRIMARY KEY (writer, seq)
);
