-- The tool catalog's risk classes and rug-pull protection (owned by the consent crate,
-- `consent::catalog`). New instants are Unix seconds.
--
-- A tool's definition (name, title, description, input and output schemas, annotations)
-- is kept as canonical JSON with its SHA-256. The approved definition is the one first
-- seen, or the one an admin approved since; while the current definition differs from
-- it, the tool is quarantined (not offered, calls refused) until an admin approves the
-- new version. An admin's review sets the tool's risk class.
ALTER TABLE consent_catalog_tools ADD COLUMN output_schema TEXT;
ALTER TABLE consent_catalog_tools ADD COLUMN definition TEXT;
ALTER TABLE consent_catalog_tools ADD COLUMN definition_hash TEXT;
ALTER TABLE consent_catalog_tools ADD COLUMN approved_definition TEXT;
ALTER TABLE consent_catalog_tools ADD COLUMN approved_hash TEXT;
ALTER TABLE consent_catalog_tools ADD COLUMN approved_by TEXT;      -- NULL: as first seen
ALTER TABLE consent_catalog_tools ADD COLUMN approved_at BIGINT;
ALTER TABLE consent_catalog_tools ADD COLUMN quarantined_since BIGINT;
ALTER TABLE consent_catalog_tools ADD COLUMN risk_override TEXT;    -- low | medium | high | critical
ALTER TABLE consent_catalog_tools ADD COLUMN reviewed_by TEXT;
ALTER TABLE consent_catalog_tools ADD COLUMN reviewed_at BIGINT;

-- Per upstream: whether an admin trusts its MCP annotations (then an unreviewed tool
-- takes the class its annotations suggest instead of `critical`).
CREATE TABLE consent_servers (
    name                    TEXT PRIMARY KEY,
    annotations_trusted_by  TEXT,                -- NULL: not trusted
    annotations_trusted_at  BIGINT,
    updated_at              BIGINT NOT NULL
);
