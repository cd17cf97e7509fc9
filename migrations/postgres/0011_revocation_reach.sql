-- Revocation that reaches access tokens (owned by the consent crate).
--
-- Every refresh token records the access token issued with it (its Biscuit revocation
-- ids, a JSON array of hex, and its expiry), so that reusing a spent refresh token
-- (a stolen copy) revokes the access tokens its family minted, not only the family.
ALTER TABLE consent_refresh_tokens ADD COLUMN access_revocation_ids TEXT;
ALTER TABLE consent_refresh_tokens ADD COLUMN access_expires_at BIGINT;
