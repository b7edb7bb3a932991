-- A pair limit hit (131056): block one recipient of one number for `seconds` on the server's
-- clock, so every worker sees the same end (worker.delivery.ratelimit.block_pair).
-- KEYS: the pair's key.
-- ARGV: seconds.
-- Returns: 1.
--@include clock
redis.call('HSET', KEYS[1], 'blocked_until', f6(now + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) + 60))
return 1
