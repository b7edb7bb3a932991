-- Apply one delivery status (worker.statuses.tracker.StatusStore.apply): a status moves only
-- forward (sent < delivered < read; failed), so replays and late, reordered webhooks change
-- nothing; the wamid index comes back with it, in the same round trip.
-- KEYS: the status hash, the wamid index.
-- ARGV: status, its rank, updated_at, the error as JSON ('' for none), ttl (seconds).
-- Returns: {changed (1 or 0), the previous status ('' for none), the index's fields...}.
local current = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local previous = redis.call('HGET', KEYS[1], 'status') or ''
local changed = 0
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'updated_at', ARGV[3], 'error', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  changed = 1
end
local out = {changed, previous}
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = v end
return out
