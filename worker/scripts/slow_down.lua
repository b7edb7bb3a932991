-- The API throttled (4, 80007, 130429): halve the number's shared rate (not below `floor`) and
-- hold every worker's next slot for `pause` seconds (worker.delivery.ratelimit.slow_down). One
-- step, so two workers throttled at once halve it twice, not once each from the same factor.
-- KEYS: the number's state.
-- ARGV: pause (seconds), recovery (per second), floor.
-- Returns: the new factor.
--@include clock
--@include rate_factor
local nkey = KEYS[1]
local pause, recovery, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = redis.call('HMGET', nkey, 'tat', 'factor', 'factor_at')
local factor = math.max(floor, rate_factor(n, recovery) / 2)
local tat = math.max(tonumber(n[1] or '0'), now + pause)
redis.call('HSET', nkey, 'tat', f6(tat), 'factor', f6(factor), 'factor_at', f6(now))
redis.call('EXPIRE', nkey, 3600)
return f6(factor)
