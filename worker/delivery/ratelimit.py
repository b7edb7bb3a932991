"""Rate limits shared by every worker, kept in Redis and taken in one atomic Lua call per send.

Two limits from Meta's Cloud API "Throughput" and "Pair rate limits" docs:
- per sending phone number: DISPATCH_RATE_LIMIT messages/s (80 by default, up to 1,000 at
  Meta's top tier), spaced evenly (GCRA without burst), so no one-second window carries
  more than the limit plus one;
- per (business number, recipient) pair: one message per DISPATCH_PAIR_INTERVAL seconds with
  bursts of DISPATCH_PAIR_BURST (Meta: 1 per 6 s, bursts up to 45).

Slots are reserved at (1 - DISPATCH_RATE_HEADROOM) of the limit, so scheduling jitter between
the reservation and the request reaching Meta does not push a one-second window over it.
A caller reserves the next free slot and sleeps until it (no polling). A slot further away than
DISPATCH_SLOT_MAX_AHEAD is not reserved: the intent gets a place in its number's parked line and
waits in Redis, not in a thread (worker.delivery.parking).
The same call honours the account circuit breaker (worker.delivery.breaker) so a paused number
costs one round trip, and lets exactly one probe through when a probe is due.

When the API still throttles (4, 80007, 130429), `slow_down` halves the shared rate and stops
every worker for the Retry-After; the rate recovers by DISPATCH_RATE_RECOVERY per second.
A pair limit hit (131056) blocks only that recipient.

Campaign sends also take a slot in their campaign's lane: at most DISPATCH_CAMPAIGN_SHARE of the
number's rate (or the campaign's throttle), reserved at most DISPATCH_LANE_MAX_AHEAD seconds
ahead (at most half of DISPATCH_SLOT_MAX_AHEAD). Transactional messages have no lane, so they
always find a slot within their own horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from worker.redis_conn import group_of
from worker.settings import Settings

# Lua that defines `acquire(pkey, ikey)` for a script whose number keys start after KEYS[ko] and
# whose limits start after ARGV[ao] (so worker.delivery.claimslot can put a claim before them).
# KEYS: the number's state, its breaker, the lane's tat ('' for none), the number's parked line;
# then per recipient its pair key and idempotency record key ('' for none).
ACQUIRE_FUNCTION = """
local nkey, bkey, lkey, qkey = KEYS[ko + 1], KEYS[ko + 2], KEYS[ko + 3], KEYS[ko + 4]
local rate, pair_interval, pair_burst = tonumber(ARGV[ao + 1]), tonumber(ARGV[ao + 2]), tonumber(ARGV[ao + 3])
local max_wait, recovery = tonumber(ARGV[ao + 4]), tonumber(ARGV[ao + 5])
local probe_interval = tonumber(ARGV[ao + 6])
local lane_rate, line = tonumber(ARGV[ao + 7]), ARGV[ao + 8]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function f6(x) return string.format('%.6f', x) end

local function acquire(pkey, ikey)
  local probe = false
  local n = redis.call('HMGET', nkey, 'tat', 'factor', 'factor_at')
  local factor = math.min(1, tonumber(n[2] or '1') + (now - tonumber(n[3] or '0')) * recovery)
  -- The parked line (worker.delivery.parking): a place in it, spaced at the number's rate.
  local line_end = 0
  if line ~= 'none' then line_end = tonumber(redis.call('GET', qkey) or '0') end
  local function park(verdict, earliest)
    local due = math.max(earliest, line_end)
    redis.call('SET', qkey, f6(due + 1 / (rate * factor)), 'EX', math.ceil(due - now) + 3600)
    return {verdict, f6(due - now)}
  end

  local b = redis.call('HMGET', bkey, 'state', 'next_probe', 'manual')
  if b[1] == 'open' then
    local next_probe = tonumber(b[2] or '0')
    if b[3] == '1' or now < next_probe then
      local wait = math.max(next_probe - now, probe_interval)
      if line ~= 'none' then return park('paused', now + wait) end
      return {'paused', f6(wait)}
    end
    redis.call('HSET', bkey, 'next_probe', f6(now + probe_interval))
    probe = true
  end
  -- While a line is parked, a new intent joins its end (first come, first sent).
  if line == 'new' and line_end > now then
    if probe then redis.call('HSET', bkey, 'next_probe', f6(now)) end
    return park('later', now)
  end

  local p = redis.call('HMGET', pkey, 'tat', 'blocked_until')
  local p_tat = tonumber(p[1] or '0')
  local pair_at = math.max(p_tat - pair_interval * (pair_burst - 1), tonumber(p[2] or '0'))
  local number_at = math.max(now, tonumber(n[1] or '0'))
  local at = math.max(number_at, pair_at)
  local lane_tat = 0
  if lane_rate > 0 then
    lane_tat = tonumber(redis.call('GET', lkey) or '0')
    at = math.max(at, lane_tat)
  end
  local wait = at - now
  if wait > max_wait then
    if probe then redis.call('HSET', bkey, 'next_probe', f6(now)) end
    -- Only the number's own backlog makes a line: one recipient's pair limit delays that intent alone.
    if line ~= 'none' and pair_at <= number_at then return park('later', at) end
    return {'later', f6(wait)}
  end
  redis.call('HSET', nkey, 'tat', f6(at + 1 / (rate * factor)))
  redis.call('EXPIRE', nkey, 3600)
  if lane_rate > 0 then redis.call('SET', lkey, f6(at + 1 / (lane_rate * factor)), 'EX', 3600) end
  redis.call('HSET', pkey, 'tat', f6(math.max(p_tat, at) + pair_interval))
  redis.call('EXPIRE', pkey, math.ceil(pair_interval * pair_burst + 60))
  -- A slot due now: mark the idempotency record `sending` here and save the caller a round trip.
  local marked = '0'
  if ikey ~= '' and wait <= 0.001 then
    redis.call('HSET', ikey, 'state', 'sending', 'since', f6(now))
    marked = '1'
  end
  if probe then return {'probe', f6(wait), marked} end
  return {'ok', f6(wait), marked}
end
"""
# One script call gives every recipient the slot N calls in a row would: a chunk's in one round trip.
_ACQUIRE = (
    "local ko, ao = 0, 0\n"
    + ACQUIRE_FUNCTION
    + """
local slots = {}
for i = 5, #KEYS, 2 do
  local slot = acquire(KEYS[i], KEYS[i + 1])
  slots[#slots + 1] = slot[1]
  slots[#slots + 1] = slot[2]
  slots[#slots + 1] = slot[3] or '0'
end
return slots
"""
)

_SLOW_DOWN = """
local nkey = KEYS[1]
local pause, recovery, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = redis.call('HMGET', nkey, 'tat', 'factor', 'factor_at')
local factor = math.min(1, tonumber(n[2] or '1') + (now - tonumber(n[3] or '0')) * recovery)
factor = math.max(floor, factor / 2)
local tat = math.max(tonumber(n[1] or '0'), now + pause)
redis.call('HSET', nkey, 'tat', string.format('%.6f', tat), 'factor', string.format('%.6f', factor),
           'factor_at', string.format('%.6f', now))
redis.call('EXPIRE', nkey, 3600)
return string.format('%.6f', factor)
"""

_BLOCK_PAIR = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], 'blocked_until', string.format('%.6f', now + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) + 60))
return 1
"""


class Verdict(StrEnum):
    OK = "ok"  # sleep `wait` seconds, then send
    PROBE = "probe"  # the same, as the breaker's one probe: a success closes it
    LATER = "later"  # no slot within the horizon: park (or requeue) for `wait` seconds
    PAUSED = "paused"  # the breaker is open: park (or requeue) for `wait` seconds


class Line(StrEnum):
    """An intent's place with respect to its number's parked line (worker.delivery.parking)."""

    NONE = "none"  # a campaign lane's intent: its fanout times it, it never parks
    NEW = "new"  # joins the end of the line while one exists
    RELEASED = "released"  # came back from the line: takes the next slot


@dataclass(frozen=True)
class Slot:
    verdict: Verdict
    wait: float  # seconds from `taken`
    marked_sending: bool = False
    taken: float = field(default_factory=time.monotonic)

    @property
    def due(self) -> float:
        """When to send, on the monotonic clock (a chunk's slots are used a while after they are taken)."""
        return self.taken + self.wait

    @property
    def granted(self) -> bool:
        return self.verdict in (Verdict.OK, Verdict.PROBE)


def slot(reply: list[str]) -> Slot:
    """A Slot from ACQUIRE_FUNCTION's reply: verdict, wait, marked."""
    verdict, wait, *marked = reply
    return Slot(Verdict(verdict), float(wait), marked == ["1"])


LANES = "wa:lanes"  # lane name -> its rate in msg/s


def number_key(phone_number_id: str) -> str:
    return f"wa:rl:{phone_number_id}"


def breaker_key(phone_number_id: str) -> str:
    return f"wa:breaker:{phone_number_id}"


class RateLimiter:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.pnid = settings.phone_number_id
        self._lane_cache: dict[str, tuple[float, float]] = {}
        self.group = group_of(client)
        self._acquire = self.group.script(_ACQUIRE)
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._block_pair = client.register_script(_BLOCK_PAIR)

    def pair_key(self, to: str) -> str:
        return f"{number_key(self.pnid)}:pair:{to}"

    def set_lane(self, name: str, rate: float) -> None:
        self.redis.hset(LANES, name, rate)

    @property
    def lane_horizon(self) -> float:
        """How far ahead a lane reserves: within half the number's horizon, so a campaign that
        fills its horizon leaves a transactional message a slot it need not be parked for."""
        return min(self.settings.lane_max_ahead, self.settings.slot_max_ahead / 2)

    def lane_rate(self, name: str) -> float:
        """A lane's rate (0 when unknown); cached for 10 s per process."""
        cached = self._lane_cache.get(name)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        rate = float(self.redis.hget(LANES, name) or 0)
        self._lane_cache[name] = (rate, time.monotonic() + 10)
        return rate

    def acquire(self, to: str, lane: str | None = None, record_key: str = "", line: Line = Line.NEW) -> Slot:
        """A slot for one message to `to`. A bulk sender (a campaign run) passes its `lane`, whose
        rate is below the number's, leaving headroom for transactional messages, and which never
        reserves far ahead. With `record_key` (an idempotency record), a slot due now also marks
        the record `sending`. Without a lane, LATER and PAUSED give the intent a place in the
        number's parked line, `wait` seconds from now."""
        return self.acquire_many([(to, record_key)], lane, line)[0]

    def acquire_many(
        self, recipients: list[tuple[str, str]], lane: str | None = None, line: Line = Line.NEW
    ) -> list[Slot]:
        """`acquire` for each (to, record key) in turn, in one round trip."""
        keys = self.number_keys(lane)
        for to, record_key in recipients:
            keys += [self.pair_key(to), record_key]
        reply = self.group.call(self._acquire, keys, self.limits(lane, line))
        return [slot(reply[i : i + 3]) for i in range(0, len(reply), 3)]

    def number_keys(self, lane: str | None) -> list[str]:
        """ACQUIRE_FUNCTION's keys before the recipients'."""
        lane_key = f"{number_key(self.pnid)}:lane:{lane}" if lane else ""
        return [number_key(self.pnid), breaker_key(self.pnid), lane_key, f"{number_key(self.pnid)}:park"]

    def limits(self, lane: str | None, line: Line) -> list[str | float]:
        """ACQUIRE_FUNCTION's arguments."""
        s = self.settings
        return [
            s.rate_limit * (1 - s.rate_headroom),
            s.pair_interval,
            s.pair_burst,
            self.lane_horizon if lane else s.slot_max_ahead,
            s.rate_recovery,
            s.breaker_probe_interval,
            self.lane_rate(lane) if lane else 0.0,
            Line.NONE if lane else line,
        ]

    def slow_down(self, retry_after: float | None) -> float:
        """Halve the shared rate and hold every worker for `retry_after`; returns the new factor."""
        pause = retry_after if retry_after is not None else 1.0
        return float(
            self._slow_down(keys=[number_key(self.pnid)], args=[pause, self.settings.rate_recovery, 0.05])
        )

    def block_pair(self, to: str, retry_after: float | None) -> None:
        self._block_pair(keys=[self.pair_key(to)], args=[max(retry_after or 0, self.settings.pair_interval)])
