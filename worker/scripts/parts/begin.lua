-- Claim an idempotency record for sending (worker.delivery.idempotency): a finished record is
-- returned as it is; one claimed or sending by a live node within `stale_after` is `busy`; a
-- `sending` one whose owner is gone is `stale` (its request may have reached the API), unless
-- `take_over_stale` (at-least-once mode) claims it again. A `claimed` one (nothing sent) left by
-- an earlier delivery of the same task (an owner is `<task id>:<token>`) is claimed again at
-- once: that delivery lost its message (a Redis restart dropped it from its worker's memory), and
-- if it is in fact still running, its next write finds the key no longer its own (parts/owned.lua).

-- The seven claim arguments from ARGV[first]: owner, now (the caller's clock, kept as given),
-- stale_after, ttl, take_over_stale ('1' or '0'), node, heartbeat_timeout.
local function claim_args(first)
  return {
    owner = ARGV[first], at = ARGV[first + 1], now = tonumber(ARGV[first + 1]),
    stale_after = tonumber(ARGV[first + 2]), ttl = tonumber(ARGV[first + 3]),
    take_over_stale = ARGV[first + 4] == '1', node = ARGV[first + 5],
    heartbeat_timeout = tonumber(ARGV[first + 6]),
  }
end

-- The task id of an owner token, or nil for an owner that is not `<task id>:<token>`.
local function task_of(owner)
  return owner and string.match(owner, '^(.+):[^:]+$')
end

-- {state, the record as JSON}; state is claimed, sent, failed, busy or stale.
local function begin(record, workers, claim)
  local rec = redis.call('HGETALL', record)
  local h = {}
  for i = 1, #rec, 2 do h[rec[i]] = rec[i + 1] end
  local state = h['state']
  if state == 'sent' or state == 'failed' then return {state, cjson.encode(h)} end
  if state == 'claimed' or state == 'sending' then
    local beat = h['node'] and redis.call('HGET', workers, h['node'])
    local alive = beat and claim.now - tonumber(beat) <= claim.heartbeat_timeout
    local task = task_of(h['owner'])
    local again = state == 'claimed' and task ~= nil and task == task_of(claim.owner)
    if alive and not again and claim.now - tonumber(h['since']) <= claim.stale_after then
      return {'busy', cjson.encode(h)}
    end
    if state == 'sending' and not claim.take_over_stale then return {'stale', cjson.encode(h)} end
  end
  if not state then
    redis.call('HSET', record, 'created', claim.at, 'attempts', 0)
    h['created'] = claim.at; h['attempts'] = '0'
  end
  redis.call('HSET', record, 'state', 'claimed', 'owner', claim.owner, 'node', claim.node, 'since', claim.at)
  redis.call('EXPIRE', record, claim.ttl)
  return {'claimed', cjson.encode(h)}
end
