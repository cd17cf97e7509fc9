-- The credential vault (owned by the consent crate, `consent::vault::Vault`): downstream
-- credentials, never stored in clear. Envelope encryption: each record has a data key of
-- its own (32 random bytes) that encrypts its value, and the data key is stored wrapped
-- by a key-encryption key that never enters the database (`kek_id` names which:
-- derived from the server's secret key, or `vault.key`). Both are XChaCha20-Poly1305,
-- base64(nonce || ciphertext), with the record's id and owner as associated data, so a
-- row copied onto another does not decrypt. `owner` is the person's user id, or '' for a
-- credential every person shares. `version` grows with each new value. Instants are
-- Unix seconds.

CREATE TABLE consent_vault (
    id          TEXT PRIMARY KEY,          -- 128 random bits, hex
    owner       TEXT NOT NULL,             -- a user id, or '' (shared)
    upstream    TEXT NOT NULL,             -- the upstream's name
    kind        TEXT NOT NULL,             -- what the value is ('api_key', 'headers', ...)
    kek_id      TEXT NOT NULL,             -- the key-encryption key that wraps data_key
    data_key    TEXT NOT NULL,             -- base64(nonce || wrapped data key)
    value       TEXT NOT NULL,             -- base64(nonce || ciphertext)
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (owner, upstream, kind)
);
CREATE INDEX consent_vault_kek ON consent_vault (kek_id);
