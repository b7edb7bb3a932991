-- An inbound message's (or a payment status's) first sighting (worker.statuses.tracker.StatusStore.
-- first_seen): its marker set if absent, and, when it is new and the app is to be told, what to
-- tell written in the same step (worker.statuses.telling). A worker that dies between the two
-- would otherwise lose the call: the event applied again is no longer new.
-- KEYS: the marker (wa:inbound:<id>); when told: the to-tell hash and due-set.
-- ARGV: ttl (seconds); when told: the event id, the entry (JSON), when a re-tell is due.
-- Returns: 1 the first time, 0 after.
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
if KEYS[3] then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
end
return 1
