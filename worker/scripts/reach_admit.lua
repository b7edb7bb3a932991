-- One account's messaging limit (worker.delivery.reach): unique template recipients in a
-- rolling window. A recipient already counted goes; a new one is counted, unless the limit is
-- reached and the sender waits (a campaign), whose run is then told until when.
-- KEYS: the account's set (recipient -> when counted), a campaign run's counters ('' for none).
-- ARGV: recipient, limit, '1' to wait when full, the window (seconds).
-- Returns: '0' when admitted, else the seconds until room frees.
--@include clock
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return '0' end
if ARGV[3] == '1' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local room_at = tonumber(oldest[2]) + window
  if KEYS[2] ~= '' then redis.call('HSET', KEYS[2], 'daily_limit_until', math.ceil(room_at)) end
  return string.format('%.3f', room_at - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], window + 3600)
return '0'
