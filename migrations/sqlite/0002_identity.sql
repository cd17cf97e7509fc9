-- Identity (owned by the idp crate): users, roles, groups, linked provider identities,
-- browser sessions, passkeys, one-time setup and email links, sign-in rate limits.
-- Instants in these tables are Unix seconds (UTC), so expiry checks compare integers on
-- both backends. Secrets (session ids, link tokens) are stored as SHA-256 hashes only.

CREATE TABLE idp_users (
    id             TEXT PRIMARY KEY,        -- UUID v7: the stable subject id
    email          TEXT NOT NULL UNIQUE,    -- lower-cased
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL,           -- admin | member
    status         TEXT NOT NULL,           -- active | invited | disabled
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_login_at  BIGINT
);

CREATE TABLE idp_user_groups (
    user_id     TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    group_name  TEXT NOT NULL,
    source      TEXT NOT NULL,              -- 'admin' or 'oidc:<provider>'
    PRIMARY KEY (user_id, group_name, source)
);

CREATE TABLE idp_identities (
    provider       TEXT NOT NULL,           -- the [auth.oidc.NAME] of the provider
    subject        TEXT NOT NULL,           -- the provider's `sub`
    user_id        TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    last_login_at  BIGINT,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX idp_identities_user ON idp_identities (user_id);

CREATE TABLE idp_sessions (
    id_hash       TEXT PRIMARY KEY,         -- SHA-256 of the session id (hex)
    user_id       TEXT REFERENCES idp_users (id) ON DELETE CASCADE, -- NULL before sign-in
    data          TEXT NOT NULL,            -- tower-sessions record data, JSON
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX idp_sessions_user ON idp_sessions (user_id);
CREATE INDEX idp_sessions_expires ON idp_sessions (expires_at);

CREATE TABLE idp_passkeys (
    id             TEXT PRIMARY KEY,        -- UUID v7
    user_id        TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    credential_id  TEXT NOT NULL UNIQUE,    -- base64url
    name           TEXT NOT NULL,
    passkey        TEXT NOT NULL,           -- webauthn-rs Passkey, JSON (public key material)
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX idp_passkeys_user ON idp_passkeys (user_id);

CREATE TABLE idp_setup_tokens (
    token_hash  TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE idp_email_tokens (
    token_hash    TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    purpose       TEXT NOT NULL,            -- login | invite
    user_id       TEXT REFERENCES idp_users (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    requested_ip  TEXT
);
CREATE INDEX idp_email_tokens_email ON idp_email_tokens (email);

CREATE TABLE idp_rate_events (
    bucket  TEXT NOT NULL,                  -- e.g. 'email-link:addr:<sha256>' or 'email-link:ip:<ip>'
    at      BIGINT NOT NULL
);
CREATE INDEX idp_rate_events_bucket_at ON idp_rate_events (bucket, at);
