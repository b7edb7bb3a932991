-- A single message's claim and its rate-limit slot in one step (worker.delivery.claimslot): one
-- round trip instead of two, where nothing has to happen between them. A claim that cannot send
-- (busy, stale, finished, or older than max_age) gets no slot.
-- KEYS: the record, the workers' heartbeats hash, the number's four keys, the recipient's pair key.
-- ARGV: the seven claim arguments (parts/begin.lua), max_age, the eight limits (parts/acquire.lua).
-- Returns: {state, the record as JSON}, and verdict, wait, marked when a slot was taken.
--@include begin
--@include acquire
local claim = claim_args(1)
local found = begin(KEYS[1], KEYS[2], claim)
if found[1] ~= 'claimed' then return found end
if claim.now - tonumber(cjson.decode(found[2])['created']) > tonumber(ARGV[8]) then return found end
local s = acquire(number_keys(3), limit_args(9), KEYS[7], KEYS[1], claim.owner)
return {found[1], found[2], s[1], s[2], s[3] or '0'}
