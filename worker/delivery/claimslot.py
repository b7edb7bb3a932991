"""A single message's claim and its rate-limit slot in one script: one round trip instead of two.

Used when nothing has to happen between the two (no customer-window check, no media to upload,
no campaign lane: `MessageDelivery.take_claim`). A fresh claim (not busy, stale or finished, and
younger than DISPATCH_MAX_AGE) takes its number's next slot in the same call, as `acquire` would
(its place in the parked line, the breaker's probe, the pair limit), and a slot due now also
marks the record `sending`. A claim that cannot send gets no slot.
"""

from __future__ import annotations

import redis

from worker.delivery.idempotency import BEGIN_FUNCTION, PREFIX, Claim, IdempotencyStore, claim_of
from worker.delivery.ratelimit import ACQUIRE_FUNCTION, Line, RateLimiter, Slot, slot
from worker.redis_conn import group_of

# KEYS: the record, the heartbeats hash, the number's four keys, the recipient's pair key.
# ARGV: the claim's seven, DISPATCH_MAX_AGE, the limits' eight.
_CLAIM_SLOT = (
    "local ko, ao = 2, 8\n"
    + BEGIN_FUNCTION
    + ACQUIRE_FUNCTION
    + """
local claim = begin(KEYS[1], KEYS[2], 0)
if claim[1] ~= 'claimed' then return claim end
if tonumber(ARGV[2]) - tonumber(cjson.decode(claim[2])['created']) > tonumber(ARGV[8]) then
  return claim
end
local s = acquire(KEYS[7], KEYS[1])
return {claim[1], claim[2], s[1], s[2], s[3] or '0'}
"""
)


class ClaimSlot:
    def __init__(self, client: redis.Redis) -> None:
        self.group = group_of(client)
        self._script = self.group.script(_CLAIM_SLOT)

    def take(
        self,
        store: IdempotencyStore,
        limiter: RateLimiter,
        key: str,
        *,
        owner: str,
        to: str,
        line: Line,
        take_over_stale: bool,
        max_age: float,
    ) -> tuple[Claim, Slot | None]:
        """The claim `store.begin` would give, and the slot `limiter.acquire` would give a fresh one."""
        keys = [PREFIX + key, store.workers, *limiter.number_keys(None), limiter.pair_key(to)]
        args = [*store.begin_args(owner, take_over_stale), max_age, *limiter.limits(None, line)]
        reply = self.group.call(self._script, keys, args)
        return claim_of(reply[:2]), slot(reply[2:]) if len(reply) > 2 else None
