-- Move an idempotency record only while this delivery still owns it (worker.delivery.idempotency):
-- the `sending` mark before a request, and the release back to `pending` after a definite refusal.
-- KEYS: the record.
-- ARGV: the owner (the delivery's claim token), then field, value pairs.
-- Returns: 1 when written, 0 when the record is no longer this delivery's.
--@include owned
if not owned(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
