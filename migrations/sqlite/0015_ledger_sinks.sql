-- Streaming the audit ledger out (owned by the consent crate, `consent::ledger::sink`):
-- each configured sink is shipped by one process at a time (the holder of a short lease,
-- renewed while it ships), and remembers per writer the last record it delivered, so a
-- restart or another replica taking over goes on where the last one stopped.

CREATE TABLE consent_ledger_sinks (
    sink         TEXT PRIMARY KEY,        -- its name (`[[audit.sinks]] name`)
    holder       TEXT NOT NULL,           -- the writer id of the process shipping it
    lease_until  BIGINT NOT NULL          -- Unix microseconds
);

CREATE TABLE consent_ledger_sink_cursors (
    sink    TEXT NOT NULL,
    writer  TEXT NOT NULL,
    seq     BIGINT NOT NULL,              -- every record of the writer up to here was delivered
    PRIMARY KEY (sink, writer)
);
