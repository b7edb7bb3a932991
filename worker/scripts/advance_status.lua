-- Apply one delivery status (worker.statuses.tracker.StatusStore.apply): a status moves only
-- forward (sent < delivered < read; failed), so replays and late, reordered webhooks change
-- nothing; the wamid index comes back with it, in the same round trip. Its pricing is kept the
-- first time a status of the wamid carries one (sent, delivered and read each repeat it), and
-- only then counted in its campaign run's counters: one step, so a message is counted once
-- whichever worker applies which of its statuses, and never lost between keeping and counting.
-- KEYS: the status hash, the wamid index.
-- ARGV: status, its rank, updated_at, the error as JSON ('' for none), ttl (seconds), the pricing
--   as JSON ('' for none), the run counter it adds one to ('billable:marketing'; '' for none), the
--   prefix of run keys ('wa:run:'; a run's counters are <prefix><campaign>:<run_id>:counts, named
--   by the index's campaign and run_id fields, which only this script reads in the same step).
-- Returns: {changed (1 or 0), the previous status ('' for none), priced (1 when this status's
--   pricing was the wamid's first), the index's fields...}.
local current = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local previous = redis.call('HGET', KEYS[1], 'status') or ''
local changed = 0
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'updated_at', ARGV[3], 'error', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  changed = 1
end
local index = redis.call('HGETALL', KEYS[2])
local priced = 0
local pricing = ARGV[6] or ''
if pricing ~= '' and redis.call('HSETNX', KEYS[1], 'pricing', pricing) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  priced = 1
  if (ARGV[7] or '') ~= '' then
    local fields = {}
    for i = 1, #index, 2 do fields[index[i]] = index[i + 1] end
    if fields['campaign'] and fields['run_id'] then
      local counts = ARGV[8] .. fields['campaign'] .. ':' .. fields['run_id'] .. ':counts'
      if redis.call('EXISTS', counts) == 1 then  -- a run past its TTL is not brought back
        redis.call('HINCRBY', counts, ARGV[7], 1)
      end
    end
  end
end
local out = {changed, previous, priced}
for _, v in ipairs(index) do out[#out + 1] = v end
return out
