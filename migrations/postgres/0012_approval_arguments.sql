-- The whole arguments of a held call as the person is shown them on the approval page
-- (owned by the consent crate, `consent::approvals::arguments`): canonical JSON,
-- pretty-printed, every value whole, values of secret-looking keys masked at every
-- depth, at most 64 KiB (longer ones cut with a note saying so). `args_hash` still
-- covers the real arguments. NULL for approvals stored before this column.
ALTER TABLE consent_approvals ADD COLUMN arguments TEXT;
