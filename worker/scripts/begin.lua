-- Claim one idempotency key for sending (worker.delivery.idempotency.IdempotencyStore.begin).
-- One step, so two workers can never both own a key.
-- KEYS: the record, the workers' heartbeats hash.
-- ARGV: the seven claim arguments (parts/begin.lua).
-- Returns: {state, the record as JSON}.
--@include begin
return begin(KEYS[1], KEYS[2], claim_args(1))
