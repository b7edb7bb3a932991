-- Rate-limit slots for recipients in turn (worker.delivery.ratelimit.RateLimiter.acquire_many):
-- the slots N calls in a row would give, in one round trip (a campaign chunk's, or one message's).
-- KEYS: the number's four keys (parts/acquire.lua), then per recipient its pair key and its
-- idempotency record key ('' for none).
-- ARGV: the eight limits (parts/acquire.lua), the owner of the records (the delivery's claim token).
-- Returns: verdict, wait, marked for each recipient, flattened.
--@include acquire
local number, limits = number_keys(1), limit_args(1)
local slots = {}
for i = 5, #KEYS, 2 do
  local slot = acquire(number, limits, KEYS[i], KEYS[i + 1], ARGV[9])
  slots[#slots + 1] = slot[1]
  slots[#slots + 1] = slot[2]
  slots[#slots + 1] = slot[3] or '0'
end
return slots
