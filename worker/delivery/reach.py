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

from worker.scripts import load

WINDOW = 24 * 3600


def reach_key(waba_id: str) -> str:
    return f"wa:reach:{waba_id}"


class Reach:
    """One account's rolling count of unique template recipients."""

    def __init__(self, client: redis.Redis, waba_id: str, limit: int | None) -> None:
        self.redis = client
        self.key = reach_key(waba_id)
        self.limit = limit
        self._admit = load("reach_admit").on(client)

    def admit(self, to: str, tally: str | None = None) -> float:
        """0 when a template to `to` may go now (and it is counted), else the seconds until room.
        A campaign send (with its run's `tally`) waits when the limit is reached, and its run
        says until when; a transactional one is always admitted."""
        if self.limit is None:
            return 0.0
        args: list[str | int] = [to, self.limit, int(tally is not None), WINDOW]
        return float(cast(str, self._admit([self.key, tally or ""], args)))

    def used(self) -> int:
        """Unique recipients counted in the last 24 hours."""
        return int(self.redis.zcount(self.key, time.time() - WINDOW, "+inf"))
