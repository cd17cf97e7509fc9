-- The OAuth 2.1 authorization server for MCP clients (owned by the consent crate,
-- `consent::oauth` and `consent::grants`). Instants are Unix seconds. Secrets (client
-- secrets, authorization codes, refresh tokens) are kept only as SHA-256 hashes (hex).

-- Registered clients: by dynamic registration (RFC 7591), by a client ID metadata
-- document (the client_id is its URL), or configured statically.
CREATE TABLE consent_clients (
    client_id                   TEXT PRIMARY KEY,
    kind                        TEXT NOT NULL,     -- dcr | metadata | static
    name                        TEXT NOT NULL,
    redirect_uris               TEXT NOT NULL,     -- JSON array of strings
    application_type            TEXT NOT NULL,     -- native | web
    token_endpoint_auth_method  TEXT NOT NULL,     -- none | client_secret_basic | client_secret_post
    secret_hash                 TEXT,              -- SHA-256 of the client secret (confidential clients)
    created_at                  BIGINT NOT NULL
);

-- What a person allowed an agent (client) to do on a resource, until when.
CREATE TABLE consent_grants (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES consent_clients (client_id) ON DELETE CASCADE,
    resource    TEXT NOT NULL,
    allow       TEXT NOT NULL,                     -- JSON array of tool patterns
    deny        TEXT NOT NULL,                     -- JSON array of tool patterns
    max_risk    TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX consent_grants_user_client ON consent_grants (user_id, client_id);

-- Authorization codes: single use, about a minute. `family_id` names the refresh-token
-- family the code starts; `access_revocation_ids` (JSON array) the access token issued
-- from it, so that a replayed code can revoke what it produced.
CREATE TABLE consent_auth_codes (
    code_hash              TEXT PRIMARY KEY,
    client_id              TEXT NOT NULL REFERENCES consent_clients (client_id) ON DELETE CASCADE,
    user_id                TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    grant_id               TEXT NOT NULL REFERENCES consent_grants (id) ON DELETE CASCADE,
    redirect_uri           TEXT NOT NULL,          -- exactly as sent to /authorize
    code_challenge         TEXT NOT NULL,          -- PKCE S256
    resource               TEXT NOT NULL,
    scope                  TEXT,
    family_id              TEXT NOT NULL,
    access_revocation_ids  TEXT,
    access_expires_at      BIGINT,
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL,
    used_at                BIGINT
);
CREATE INDEX consent_auth_codes_expires ON consent_auth_codes (expires_at);

-- Refresh tokens: rotated on every use; reuse of a used one revokes its whole family.
CREATE TABLE consent_refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL REFERENCES consent_clients (client_id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    grant_id    TEXT NOT NULL REFERENCES consent_grants (id) ON DELETE CASCADE,
    resource    TEXT NOT NULL,
    scope       TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX consent_refresh_tokens_family ON consent_refresh_tokens (family_id);
CREATE INDEX consent_refresh_tokens_grant ON consent_refresh_tokens (grant_id);

-- Revoked access tokens, by Biscuit revocation id (hex), kept until the token would
-- have expired anyway.
CREATE TABLE consent_token_revocations (
    revocation_id  TEXT PRIMARY KEY,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX consent_token_revocations_expires ON consent_token_revocations (expires_at);
