-- The parking pump published these (worker.delivery.parking.ParkingLot.done): forget them,
-- unless one was parked again meanwhile (a released intent that ran and found no slot yet),
-- whose message is then that new one's.
-- KEYS: the parked set, the releasing set, the messages hash.
-- ARGV: the task ids.
-- Returns: how many.
for _, id in ipairs(ARGV) do
  redis.call('ZREM', KEYS[2], id)
  if not redis.call('ZSCORE', KEYS[1], id) then redis.call('HDEL', KEYS[3], id) end
end
return #ARGV
