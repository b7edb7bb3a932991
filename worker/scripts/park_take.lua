-- The parking pump's take (worker.delivery.parking.ParkingLot.take): put back what a dead pump
-- took more than a lease ago, then take the due intents, leased to this pump until it publishes
-- them, so none is published by two pumps or lost with one.
-- KEYS: the parked set (by due time), the releasing set (by lease start), the messages hash.
-- ARGV: now, lease (seconds), limit.
-- Returns: task id, message, for each intent taken, flattened.
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - lease)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], now, id)
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
if #ids == 0 then return {} end
local taken = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local message = redis.call('HGET', KEYS[3], id)
  if message then
    redis.call('ZADD', KEYS[2], now, id)
    table.insert(taken, id)
    table.insert(taken, message)
  end
end
return taken
