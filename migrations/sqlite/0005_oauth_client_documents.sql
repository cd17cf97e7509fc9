-- Client ID metadata documents (consent::oauth::cimd): a client whose client_id is the
-- URL of its metadata document is cached in consent_clients (kind `metadata`) with the
-- instant it was fetched and the instant until which it may be used without fetching it
-- again (from the response's Cache-Control, clamped). Both NULL for other kinds.
ALTER TABLE consent_clients ADD COLUMN document_fetched_at BIGINT;
ALTER TABLE consent_clients ADD COLUMN document_fresh_until BIGINT;
