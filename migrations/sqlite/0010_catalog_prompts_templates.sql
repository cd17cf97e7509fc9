-- The catalog's prompts and resource templates (owned by the consent crate,
-- `consent::catalog::entries`). Instants are Unix seconds.
--
-- Rug-pull protection as for tools (0006): every prompt and resource template of every
-- upstream is kept with its definition as canonical JSON and its SHA-256. A prompt's
-- definition is its name, title, description and arguments; a resource template's is
-- its uriTemplate, name, title, description, mimeType and annotations. The approved
-- definition is the one first seen, or the one an admin approved since; while the
-- current definition differs from it, the entry is quarantined (a prompt is not listed
-- and prompts/get is refused; a template is not listed) until an admin approves the new
-- version or the upstream goes back to the approved one. An entry that disappears
-- keeps its row (its history and its approved definition).
CREATE TABLE consent_catalog_entries (
    server               TEXT NOT NULL,      -- upstream name
    kind                 TEXT NOT NULL,      -- prompt | resource_template
    name                 TEXT NOT NULL,      -- the prompt's name, or the template's uriTemplate
    definition           TEXT NOT NULL,      -- the current definition, canonical JSON
    definition_hash      TEXT NOT NULL,      -- SHA-256 (hex) of definition
    approved_definition  TEXT NOT NULL,      -- the first seen, or the one an admin approved
    approved_hash        TEXT NOT NULL,
    approved_by          TEXT,               -- NULL: approved by being the first version seen
    approved_at          BIGINT NOT NULL,
    quarantined_since    BIGINT,             -- NULL: the current definition is the approved one
    first_seen           BIGINT NOT NULL,
    last_seen            BIGINT NOT NULL,
    PRIMARY KEY (server, kind, name),
    CHECK (kind IN ('prompt', 'resource_template'))
);
