"""Meta's messaging limits: how many unique users a business portfolio may start conversations
with by template in a rolling 24 hours (250, 2,000, 10,000, 100,000, then unlimited).

A sender's optional `daily_limit` (senders file) enables the count, kept per `waba_id` so the
numbers of one account share it: a sorted set of recipients by the time their first template of
the window went out. A recipient already counted costs nothing more. A campaign's template to a
new recipient beyond the limit waits (parked, not failed) until the oldest entry leaves the
window; a transactional template is counted and sent at once, ahead of every waiting campaign
send, because an order update must not wait for a promotion's room.
"""

from __future__ import annotations

import time
from typing import cast

import redis

WINDOW = 24 * 3600

# KEYS: the account's set, and a campaign run's counters ('' for none), which are told when the
# run waits. ARGV: recipient, limit, '1' to wait when full, the window. Returns 0 when admitted
# (counted now, or already), else the seconds until room frees.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return '0' end
if ARGV[3] == '1' and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local room_at = tonumber(oldest[2]) + window
  if KEYS[2] ~= '' then redis.call('HSET', KEYS[2], 'daily_limit_until', math.ceil(room_at)) end
  return string.format('%.3f', room_at - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], window + 3600)
return '0'
"""


def reach_key(waba_id: str) -> str:
    return f"wa:reach:{waba_id}"


class Reach:
    """One account's rolling count of unique template recipients."""

    def __init__(self, client: redis.Redis, waba_id: str, limit: int | None) -> None:
        self.redis = client
        self.key = reach_key(waba_id)
        self.limit = limit
        self._admit = client.register_script(_ADMIT)

    def admit(self, to: str, tally: str | None = None) -> float:
        """0 when a template to `to` may go now (and it is counted), else the seconds until room.
        A campaign send (with its run's `tally`) waits when the limit is reached, and its run
        says until when; a transactional one is always admitted."""
        if self.limit is None:
            return 0.0
        args: list[str | int] = [to, self.limit, int(tally is not None), WINDOW]
        return float(cast(str, self._admit(keys=[self.key, tally or ""], args=args)))

    def used(self) -> int:
        """Unique recipients counted in the last 24 hours."""
        return int(self.redis.zcount(self.key, time.time() - WINDOW, "+inf"))
