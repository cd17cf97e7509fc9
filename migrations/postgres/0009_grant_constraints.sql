-- Argument constraints and call budgets of grants (owned by the consent crate,
-- `consent::grants` and `consent::budgets`).
--
-- `args` is what the person required of the arguments of the tools they allowed, as
-- JSON in the shape of a token block's `Restriction.args`: a list of
-- `{"name": …, "rule": {"equals" | "prefix": "…"} | {"one_of": ["…", …]}, "tools": ["server.tool", …]}`.
-- The mint writes them into the token's consent block, whose Datalog enforces them.
-- `calls_per_hour` is the grant's call budget (NULL: none); the mint puts it in the
-- token's authority block, and the gateway counts the calls it forwards against it.
ALTER TABLE consent_grants ADD COLUMN args TEXT NOT NULL DEFAULT '[]';
ALTER TABLE consent_grants ADD COLUMN calls_per_hour BIGINT;

-- The calls forwarded under each budgeted grant, per clock hour (`hour` = Unix seconds
-- / 3600, UTC). Every replica counts in memory and adds what it counted here about
-- once a second, then reads back every grant's total for the hour: replicas share a
-- budget within about a second. Rows of past hours are deleted after a day.
CREATE TABLE consent_grant_usage (
    grant_id  TEXT NOT NULL,
    hour      BIGINT NOT NULL,
    calls     BIGINT NOT NULL,
    PRIMARY KEY (grant_id, hour)
);
CREATE INDEX consent_grant_usage_hour ON consent_grant_usage (hour);
