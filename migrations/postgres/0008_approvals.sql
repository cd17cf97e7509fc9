-- Approvals of critical calls (owned by the consent crate, `consent::approvals`). A
-- `tools/call` of a tool whose effective risk class is `critical` is held until the
-- person behind the token approves it. Instants are Unix seconds.
--
-- The id is 256 random bits (base64url): it is the approval page's URL and the
-- `requestState` a 2026-07-28 client retries with, so it must not be guessable. The
-- arguments are kept only as the SHA-256 of their canonical JSON (to match a retried
-- call) and a short preview for the person (values truncated, secret-looking keys
-- masked); the full payload is never stored.
CREATE TABLE consent_approvals (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES idp_users (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,                      -- the agent
    grant_id    TEXT NOT NULL,
    server      TEXT NOT NULL,                      -- upstream name
    tool        TEXT NOT NULL,                      -- the tool's name upstream
    args_hash   TEXT NOT NULL,                      -- SHA-256 (hex) of the canonical arguments
    preview     TEXT NOT NULL,
    status      TEXT NOT NULL,                      -- pending | approved | denied | expired
    scope       TEXT,                               -- once | grant (when approved)
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,                    -- undecided past this: expired (denied)
    decided_by  TEXT,                               -- the user id of who decided
    decided_at  BIGINT,
    method      TEXT,                               -- session | passkey
    used_at     BIGINT                              -- a `once` approval, when its call went
);
CREATE INDEX consent_approvals_user ON consent_approvals (user_id, status);
CREATE INDEX consent_approvals_call ON consent_approvals (grant_id, server, tool, status);
