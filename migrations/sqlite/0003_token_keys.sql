-- Token root keys (owned by the consent crate, `consent::token::KeyRing`): the Ed25519
-- keys that sign access tokens. `kid` is the token's root key id. The private key is
-- encrypted with XChaCha20-Poly1305 under the server's secret key (nonce || ciphertext,
-- base64; the kid is the associated data), never stored in clear. Instants are Unix
-- seconds. The active key is the one not retired; a retired key still verifies tokens
-- until `retired_at` plus the longest access-token lifetime.

CREATE TABLE consent_keys (
    kid          BIGINT PRIMARY KEY,
    algorithm    TEXT NOT NULL,             -- 'Ed25519'
    public_key   TEXT NOT NULL,             -- hex
    private_key  TEXT NOT NULL,             -- base64(nonce || XChaCha20-Poly1305 ciphertext)
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);
CREATE INDEX consent_keys_retired ON consent_keys (retired_at);
