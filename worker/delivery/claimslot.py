"""A single message's claim and its rate-limit slot in one script: one round trip instead of two.

Used when nothing has to happen between the two (no customer-window check, no media to upload,
no campaign lane: `MessageDelivery.take_claim`). A fresh claim (not busy, stale or finished, and
younger than DISPATCH_MAX_AGE) takes its number's next slot in the same call, as `acquire` would
(its place in the parked line, the breaker's probe, the pair limit), and a slot due now also
marks the record `sending`. A claim that cannot send gets no slot.
"""

from __future__ import annotations

import redis

from worker.delivery.idempotency import PREFIX, Claim, IdempotencyStore, claim_of
from worker.delivery.ratelimit import Line, RateLimiter, Slot, slot
from worker.scripts import load


class ClaimSlot:
    def __init__(self, client: redis.Redis) -> None:
        self._script = load("claim_slot").on(client)

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
        reply = self._script(keys, args)
        return claim_of(reply[:2]), slot(reply[2:]) if len(reply) > 2 else None
