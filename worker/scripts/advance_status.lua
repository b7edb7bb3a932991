-- Apply one delivery status (worker.statuses.tracker.StatusStore.apply): a status moves only
-- forward (sent < delivered < read; failed), so replays and late, reordered webhooks change
-- nothing; the wamid index comes back with it, in the same round trip. Its pricing is kept the
-- first time a status of the wamid carries one (sent, delivered and read each repeat it), and
-- only then counted in its campaign run's counters: one step, so a message is counted once
-- whichever worker applies which of its statuses, and never lost between keeping and counting.
-- A status whose wamid has no index but whose biz_opaque_callback_data names one of our keys (the
-- tracker) ties that intent back in the same step (parts/tracked.lua), before the index is read.
-- A change the app is to be told of is written "to tell" in the same step (worker.statuses.telling):
-- a worker that dies before it told the app leaves the entry, and another re-tells it after its
-- lease; the same status applied again changes nothing, so without it that one call was lost.
-- KEYS: the status hash, the wamid index; with a tracker, its key's record, the dead letters'
--   hash and their index; then, when the app is told, the to-tell hash and due-set (so #KEYS says
--   which: 2, 4 (tell), 5 (tracker) or 7 (both)).
-- ARGV: status, its rank, updated_at, the error as JSON ('' for none), ttl (seconds), the pricing
--   as JSON ('' for none), the run counter it adds one to ('billable:marketing'; '' for none), the
--   prefix of run keys ('wa:run:'; a run's counters are <prefix><campaign>:<run_id>:counts, named
--   by the index's campaign and run_id fields, which only this script reads in the same step);
--   with a tracker: the key it names, the wamid, the recipient's wa_id, now; then, when told: the
--   event id, the status event as JSON, when a re-tell is due (now + lease).
-- Returns: {changed (1 or 0), the previous status ('' for none), priced (1 when this status's
--   pricing was the wamid's first), tied (1: an ambiguous intent became sent, 2: a request in
--   flight noted the wamid, 0: neither), the index's fields... (for a request in flight: its key
--   and task id).
--@include tracked
local tracker = #KEYS >= 5
local tell = nil
if #KEYS == 4 or #KEYS == 7 then
  local k, a = tracker and 6 or 3, tracker and 13 or 9
  tell = {entries = KEYS[k], due = KEYS[k + 1], id = ARGV[a], event = ARGV[a + 1], at = ARGV[a + 2]}
end
local current = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local previous = redis.call('HGET', KEYS[1], 'status') or ''
local changed = 0
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'updated_at', ARGV[3], 'error', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  changed = 1
end
local index = redis.call('HGETALL', KEYS[2])
local tied = 0
if #index == 0 and tracker then
  local task_id
  tied, task_id = tie_back({record = KEYS[3], dead = KEYS[4], dead_index = KEYS[5], index = KEYS[2],
    key = ARGV[9], wamid = ARGV[10], wa_id = ARGV[11], now = ARGV[12], ttl = ARGV[5]})
  if tied == 1 then index = redis.call('HGETALL', KEYS[2]) end
  if tied == 2 then index = {'key', ARGV[9], 'task_id', task_id} end  -- what is known of it yet
end
if changed == 1 and tell then  -- what the applier tells, rebuilt from this if it never does
  local noted = tied == 2 and cjson.encode({key = index[2], task_id = index[4]}) or 'null'
  local before = previous == '' and 'null' or ('"' .. previous .. '"')
  redis.call('HSET', tell.entries, tell.id, '{"type":"message.status","previous":' .. before ..
    ',"noted":' .. noted .. ',"event":' .. tell.event .. '}')
  redis.call('ZADD', tell.due, tell.at, tell.id)
end
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
local out = {changed, previous, priced, tied}
for _, v in ipairs(index) do out[#out + 1] = v end
return out
