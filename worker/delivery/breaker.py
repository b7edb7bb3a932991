"""Account circuit breaker: one account-level error pauses sending for the whole phone number.

When the API says the account cannot send (token expired or revoked, permission missing,
policy block, payment, quality limit), every queued message would fail the same way. Instead
the breaker opens: tasks are handed back to the queue (not failed, not counted as attempts),
one probe is let through every DISPATCH_BREAKER_PROBE_INTERVAL seconds (see worker.delivery.ratelimit),
and the first success closes it. `pause`/`resume` do the same by hand; a manual pause sends no probes.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis

from worker.delivery.ratelimit import breaker_key


class Breaker:
    def __init__(self, client: redis.Redis, phone_number_id: str, probe_interval: float) -> None:
        self.redis = client
        self.key = breaker_key(phone_number_id)
        self.probe_interval = probe_interval

    def trip(self, code: int | None, message: str) -> bool:
        """Open (or keep open) after an account error; True when this call opened it."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.key, "state")
        pipe.hset(
            self.key,
            mapping={
                "state": "open",
                "code": code if code is not None else "",
                "message": message[:500],
                "next_probe": now + self.probe_interval,
                "updated": now,
            },
        )
        pipe.hsetnx(self.key, "since", now)
        pipe.hincrby(self.key, "trips", 1)
        was, *_ = pipe.execute()
        return was != "open"

    def close(self) -> bool:
        """Resume sending after a successful probe; True when it was open."""
        return bool(self.redis.delete(self.key))

    def pause(self, reason: str) -> None:
        now = time.time()
        self.redis.hset(
            self.key,
            mapping={
                "state": "open",
                "manual": 1,
                "code": "",
                "message": reason,
                "since": now,
                "updated": now,
                "next_probe": now,
            },
        )

    def status(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.redis.hgetall(self.key)) or {"state": "closed"}
