-- Revocation that reaches access tokens (owned by the consent crate).
--
-- Every refresh token records the access token issued with it (its Biscuit revocation
-- ids, a JSON array of hex, and its expiry), so that reusing a spent refresh token
-- (a stolen copy) revokes the access tokens its family minted, not only the family.
ALTER TABLE consent_refresh_tokens ADD COLUMN access_revocation_ids TEXT;
ALTER TABLE consent_refresh_tokens ADD COLUMN access_expires_at BIGINT;

-- A signing key revoked in an emergency (`warrant keys revoke`): from `revoked_at` on it
-- verifies nothing, on every replica within a second, without the retired-key grace.
ALTER TABLE consent_keys ADD COLUMN revoked_at BIGINT;
