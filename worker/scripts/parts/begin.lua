-- Claim an idempotency record for sending (worker.delivery.idempotency): a finished record is
-- returned as it is; one claimed or sending by a live node within `stale_after` is `busy`; a
-- `sending` one whose owner is gone is `stale` (its request may have reached the API), unless
-- `take_over_stale` (at-least-once mode) claims it again.

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
    if alive and claim.now - tonumber(h['since']) <= claim.stale_after then return {'busy', cjson.encode(h)} end
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
