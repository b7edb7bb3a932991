-- The ledger's audit (worker.recovery.ledger.Ledger.lost): which ledgered tasks are nowhere, in
-- one step, so a message cannot move from a queue to a worker's unacked set between two reads
-- and be taken for lost.
-- KEYS: the ledger's index (task id -> when published), the queues' lists, the live workers'
-- unacked hashes (values [payload, exchange, routing_key]), then the parked and releasing sets.
-- ARGV: published before (unix seconds), how many of KEYS are queues.
-- Returns: the ids of tasks published before that time found in none of them.
local nqueues = tonumber(ARGV[2])
local present = {}
local function note(payload)
  if type(payload) == 'table' and type(payload.headers) == 'table' and payload.headers.id then
    present[payload.headers.id] = true
  end
end
for i = 2, 1 + nqueues do
  for _, raw in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    local ok, payload = pcall(cjson.decode, raw)
    if ok then note(payload) end
  end
end
for i = 2 + nqueues, #KEYS - 2 do
  for _, raw in ipairs(redis.call('HVALS', KEYS[i])) do
    local ok, entry = pcall(cjson.decode, raw)
    if ok and type(entry) == 'table' then note(entry[1]) end
  end
end
for _, key in ipairs({KEYS[#KEYS - 1], KEYS[#KEYS]}) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do present[id] = true end
end
local lost = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  if not present[id] then table.insert(lost, id) end
end
return lost
