-- Take the to-tell entries whose lease ended (worker.statuses.telling.Tells.take): each due one is
-- pushed a lease forward in the same step it is read, so two workers' drains never both re-tell
-- it at once, and one that dies re-telling leaves it to the next after the lease. An id whose
-- entry is gone (told meanwhile) leaves the due-set.
-- KEYS: the to-tell hash, its due-set.
-- ARGV: now, the lease's end (now + lease), how many at most.
-- Returns: {id, entry, id, entry, ...}.
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[1], id)
  if entry then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = entry
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
