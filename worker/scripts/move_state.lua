-- Move an idempotency record from one state to another, and only from that one
-- (worker.delivery.deadletters): re-drive reopens a `failed` key (a sent or in-flight one is
-- left alone) and puts it back when the enqueue did not happen; a status webhook fails a `sent`
-- one with its error.
-- KEYS: the record.
-- ARGV: from, to, the error as JSON (optional).
-- Returns: 1 when moved, else 0.
if redis.call('HGET', KEYS[1], 'state') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', ARGV[2])
  if ARGV[3] then redis.call('HSET', KEYS[1], 'error', ARGV[3]) end
  return 1
end
return 0
