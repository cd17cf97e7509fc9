-- Trust ceilings (owned by the consent crate, `consent::ceilings`): the highest risk
-- class any agent acting for a user may reach. A group's default ceiling applies to its
-- members (a user in several groups gets the lowest); a user's own ceiling is an admin's
-- override and wins over every group. A user with neither has the configured default
-- (`[policy] default_ceiling`). Instants are Unix seconds; `set_by` is the admin's user id.
CREATE TABLE consent_ceilings (
    subject_kind  TEXT NOT NULL,      -- user | group
    subject       TEXT NOT NULL,      -- the user's id, or the group's name
    ceiling       TEXT NOT NULL,      -- low | medium | high | critical
    set_by        TEXT NOT NULL,
    set_at        BIGINT NOT NULL,
    PRIMARY KEY (subject_kind, subject)
);

-- Every change to a ceiling, kept: who set or cleared (`ceiling` NULL) what, when.
CREATE TABLE consent_ceiling_changes (
    id            TEXT PRIMARY KEY,   -- UUID v7 (ordered by time)
    subject_kind  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    ceiling       TEXT,
    set_by        TEXT NOT NULL,
    set_at        BIGINT NOT NULL
);
CREATE INDEX consent_ceiling_changes_subject ON consent_ceiling_changes (subject_kind, subject);
