-- The server's clock (the same for every worker, whatever their own clocks say), and numbers
-- written with microseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function f6(x) return string.format('%.6f', x) end
