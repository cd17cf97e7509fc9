-- Foundation: the tool catalog (owned by the consent crate) and upstream health
-- history (owned by the proxy crate). Timestamps are UTC RFC 3339 text.

CREATE TABLE consent_catalog_tools (
    server        TEXT NOT NULL,
    name          TEXT NOT NULL,
    title         TEXT,
    description   TEXT,
    annotations   TEXT,            -- MCP tool annotations, JSON
    input_schema  TEXT NOT NULL,   -- JSON Schema, JSON
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    PRIMARY KEY (server, name)
);

CREATE TABLE proxy_upstream_events (
    id      TEXT PRIMARY KEY,      -- UUID v7, time-ordered
    server  TEXT NOT NULL,
    at      TEXT NOT NULL,
    state   TEXT NOT NULL,         -- starting | ready | down | stopped
    detail  TEXT
);
CREATE INDEX proxy_upstream_events_server_at ON proxy_upstream_events (server, at);
