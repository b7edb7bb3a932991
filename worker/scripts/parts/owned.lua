-- Whether `owner` (one delivery's claim token) still holds the idempotency record `ikey`: it is
-- claimed or sending, by that delivery. A delivery whose claim was taken over (its worker was cut
-- off from Redis past the heartbeat timeout, another delivery claimed the key, and then the first
-- came back) must neither send nor move the record.
local function owned(ikey, owner)
  local r = redis.call('HMGET', ikey, 'state', 'owner')
  return (r[1] == 'claimed' or r[1] == 'sending') and r[2] == owner
end
