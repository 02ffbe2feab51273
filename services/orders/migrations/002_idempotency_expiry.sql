-- Idempotency keys are forgotten after a window (orders.DefaultKeyTTL); the pruner finds the
-- old ones through this index instead of reading the whole table.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
