-- A rate-limit slot for one message (worker.delivery.ratelimit): the number's rate (GCRA, no
-- burst), the recipient's pair limit, a campaign lane's share, the account breaker's probe, and
-- a place in the number's parked line when no slot is near.
--@include clock
--@include rate_factor
--@include owned

-- The number's four keys from KEYS[first]: its state, its breaker, the lane's tat ('' for none),
-- its parked line.
local function number_keys(first)
  return {state = KEYS[first], breaker = KEYS[first + 1], lane = KEYS[first + 2], line = KEYS[first + 3]}
end

-- The eight limits from ARGV[first]: rate, pair_interval, pair_burst, max_wait, recovery,
-- probe_interval, lane_rate (0 for none), line (none, new or released).
local function limit_args(first)
  return {
    rate = tonumber(ARGV[first]), pair_interval = tonumber(ARGV[first + 1]),
    pair_burst = tonumber(ARGV[first + 2]), max_wait = tonumber(ARGV[first + 3]),
    recovery = tonumber(ARGV[first + 4]), probe_interval = tonumber(ARGV[first + 5]),
    lane_rate = tonumber(ARGV[first + 6]), line = ARGV[first + 7],
  }
end

-- {verdict, wait, marked}: verdict ok, probe, later, paused, or lost (the record `ikey` is no
-- longer `owner`'s: no slot); wait in seconds from now; marked '1' when the idempotency record
-- `ikey` ('' for none) was marked `sending` (a slot due now).
local function acquire(number, limits, pkey, ikey, owner)
  if ikey ~= '' and not owned(ikey, owner) then return {'lost', '0', '0'} end
  local rate, line = limits.rate, limits.line
  local probe = false
  local n = redis.call('HMGET', number.state, 'tat', 'factor', 'factor_at')
  local factor = rate_factor(n, limits.recovery)
  -- The parked line (worker.delivery.parking): a place in it, spaced at the number's rate.
  local line_end = 0
  if line ~= 'none' then line_end = tonumber(redis.call('GET', number.line) or '0') end
  local function park(verdict, earliest)
    local due = math.max(earliest, line_end)
    redis.call('SET', number.line, f6(due + 1 / (rate * factor)), 'EX', math.ceil(due - now) + 3600)
    return {verdict, f6(due - now)}
  end

  local b = redis.call('HMGET', number.breaker, 'state', 'next_probe', 'manual')
  if b[1] == 'open' then
    local next_probe = tonumber(b[2] or '0')
    if b[3] == '1' or now < next_probe then
      local wait = math.max(next_probe - now, limits.probe_interval)
      if line ~= 'none' then return park('paused', now + wait) end
      return {'paused', f6(wait)}
    end
    redis.call('HSET', number.breaker, 'next_probe', f6(now + limits.probe_interval))
    probe = true
  end
  -- While a line is parked, a new intent joins its end (first come, first sent).
  if line == 'new' and line_end > now then
    if probe then redis.call('HSET', number.breaker, 'next_probe', f6(now)) end
    return park('later', now)
  end

  local p = redis.call('HMGET', pkey, 'tat', 'blocked_until')
  local p_tat = tonumber(p[1] or '0')
  local pair_at = math.max(p_tat - limits.pair_interval * (limits.pair_burst - 1), tonumber(p[2] or '0'))
  local number_at = math.max(now, tonumber(n[1] or '0'))
  local at = math.max(number_at, pair_at)
  local lane_tat = 0
  if limits.lane_rate > 0 then
    lane_tat = tonumber(redis.call('GET', number.lane) or '0')
    at = math.max(at, lane_tat)
  end
  local wait = at - now
  if wait > limits.max_wait then
    if probe then redis.call('HSET', number.breaker, 'next_probe', f6(now)) end
    -- Only the number's own backlog makes a line: one recipient's pair limit delays that intent alone.
    if line ~= 'none' and pair_at <= number_at then return park('later', at) end
    return {'later', f6(wait)}
  end
  redis.call('HSET', number.state, 'tat', f6(at + 1 / (rate * factor)))
  redis.call('EXPIRE', number.state, 3600)
  if limits.lane_rate > 0 then
    redis.call('SET', number.lane, f6(at + 1 / (limits.lane_rate * factor)), 'EX', 3600)
  end
  redis.call('HSET', pkey, 'tat', f6(math.max(p_tat, at) + limits.pair_interval))
  redis.call('EXPIRE', pkey, math.ceil(limits.pair_interval * limits.pair_burst + 60))
  -- A slot due now: mark the idempotency record `sending` here and save the caller a round trip.
  local marked = '0'
  if ikey ~= '' and wait <= 0.001 then
    redis.call('HSET', ikey, 'state', 'sending', 'since', f6(now))
    marked = '1'
  end
  if probe then return {'probe', f6(wait), marked} end
  return {'ok', f6(wait), marked}
end
