-- Keep an ambiguous outcome (worker.delivery.idempotency.IdempotencyStore.ambiguous): a request
-- that may have reached the API and whose answer never came. When a status webhook named this
-- key meanwhile (the tracker, parts/tracked.lua noted its wamid on the `sending` record), the API
-- did accept it: the record becomes `sent` with that wamid instead. Else the record is `failed`
-- and keeps the intent's origin and run counters, so a status that comes later can tie it back,
-- and its dead letter is written in the same step: a status between the two would otherwise
-- leave a dead letter for a message that was sent.
-- KEYS: the record, the dead letters' hash, their index (by time).
-- ARGV: the key, attempts, the error as JSON, now, ttl (seconds), the origin as JSON (the wamid
--   index's fields: key, to, task_id, type, sender, intent, campaign, run_id), the run's counters
--   hash ('' for none), the wamid index prefix, the dead letter as JSON, the dead letters' ttl.
-- Returns: {'sent', wamid, wa_id} when a status had named it, else {'failed'}.
--@include tracked
local echoed = redis.call('HGET', KEYS[1], 'echoed')
local tally = ARGV[7]
if echoed then
  local wa_id = redis.call('HGET', KEYS[1], 'echoed_wa_id') or ''
  local fields = cjson.decode(ARGV[6])
  redis.call('HSET', KEYS[1], 'state', 'sent', 'attempts', ARGV[2], 'wamid', echoed, 'wa_id', wa_id,
    'to', fields['to'] or '', 'finished', ARGV[4], 'tracked', '1')
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  write_index(ARGV[8] .. echoed, fields, ARGV[2], ARGV[5])
  if tally ~= '' then redis.call('HINCRBY', tally, 'sent', 1) end
  return {'sent', echoed, wa_id}
end
redis.call('HSET', KEYS[1], 'state', 'failed', 'attempts', ARGV[2], 'error', ARGV[3],
  'finished', ARGV[4], 'origin', ARGV[6], 'tally', tally)
redis.call('EXPIRE', KEYS[1], ARGV[5])
if tally ~= '' then
  redis.call('HINCRBY', tally, 'failed', 1)
  redis.call('HINCRBY', tally, 'failed:ambiguous', 1)
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[9])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[10])
redis.call('EXPIRE', KEYS[3], ARGV[10])
return {'failed'}
