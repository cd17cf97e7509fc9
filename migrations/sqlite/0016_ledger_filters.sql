-- The audit log's filters get indexes of their own on PostgreSQL (see its 0016); the
-- embedded database keeps the time index alone: every index is another page written
-- with each record, on the path of every call. (A migration of the same number keeps
-- both backends' histories in step.)
SELECT 1;
