-- A number's rate factor: halved by each throttle (slow_down.lua), recovering `recovery` per
-- second since it was set. `state` is HMGET(number, 'tat', 'factor', 'factor_at').
local function rate_factor(state, recovery)
  return math.min(1, tonumber(state[2] or '1') + (now - tonumber(state[3] or '0')) * recovery)
end
