-- The customer wrote at `at` (worker.delivery.window): keep the latest time only, since inbound
-- webhooks may arrive out of order, expiring when the 24-hour window closes.
-- KEYS: the window key (number, customer).
-- ARGV: at (unix seconds), the window's length (seconds).
-- Returns: 1 when it moved forward, else 0.
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > last then
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', math.floor(tonumber(ARGV[1]) + tonumber(ARGV[2])))
  return 1
end
return 0
