-- The tracker's writes (worker.delivery.callback_data): a message's biz_opaque_callback_data
-- names its idempotency key, so a status for a wamid never recorded (its worker died after the
-- API accepted the request, before it kept the answer) finds its intent.

-- The wamid index a send writes (worker.delivery.idempotency.IdempotencyStore.sent): `fields`
-- (key, to, task_id, type, sender, intent, campaign, run_id) and the attempts.
local function write_index(index, fields, attempts, ttl)
  local flat = {'attempts', attempts}
  for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end
  redis.call('HSET', index, unpack(flat))
  redis.call('EXPIRE', index, ttl)
end

-- A status named `record`'s key: an ambiguous failure (a `failed` record that kept its origin)
-- becomes `sent` with the status's wamid, its wamid index written, its run's counters moved from
-- failed:ambiguous to sent and its dead letter removed (1); a request still `sending` notes the
-- wamid for the failure that may follow (2, with the task id of its claim's owner,
-- '<task id>:<token>'); anything else is left as it is (0).
local function tie_back(t)
  local state = redis.call('HGET', t.record, 'state')
  if state == 'sending' then
    redis.call('HSET', t.record, 'echoed', t.wamid, 'echoed_wa_id', t.wa_id)
    local owner = redis.call('HGET', t.record, 'owner') or ''
    return 2, string.match(owner, '^(.*):[^:]*$') or owner
  end
  if state ~= 'failed' then return 0 end
  local r = redis.call('HMGET', t.record, 'origin', 'tally', 'attempts')
  if not r[1] then return 0 end  -- a definite failure: only an ambiguous one keeps its origin
  local fields = cjson.decode(r[1])
  redis.call('HSET', t.record, 'state', 'sent', 'wamid', t.wamid, 'wa_id', t.wa_id,
    'to', fields['to'] or '', 'finished', t.now, 'tracked', '1')
  redis.call('HDEL', t.record, 'error', 'origin', 'tally')
  write_index(t.index, fields, r[3] or '0', t.ttl)
  local tally = r[2] or ''
  if tally ~= '' and redis.call('EXISTS', tally) == 1 then  -- a run past its TTL is not brought back
    redis.call('HINCRBY', tally, 'failed', -1)
    redis.call('HINCRBY', tally, 'failed:ambiguous', -1)
    redis.call('HINCRBY', tally, 'sent', 1)
  end
  redis.call('HDEL', t.dead, t.key)
  redis.call('ZREM', t.dead_index, t.key)
  return 1
end
