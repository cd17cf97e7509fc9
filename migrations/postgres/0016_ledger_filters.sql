-- The audit log pages filter the ledger by person, agent, tool and kind, newest first.
-- Without these, a filter that matches few records reads the time index backwards
-- through every record that does not match (seconds on 10 million). Each index is one
-- more entry per record: PostgreSQL takes them in its batched writes; the embedded
-- SQLite database, one machine's records, keeps the time index alone.
CREATE INDEX consent_ledger_records_user ON consent_ledger_records (user_id, at);
CREATE INDEX consent_ledger_records_agent ON consent_ledger_records (agent, at);
CREATE INDEX consent_ledger_records_tool ON consent_ledger_records (tool, at);
CREATE INDEX consent_ledger_records_kind ON consent_ledger_records (kind, at);
