"""The callbacks' outbox in Redis: one hash per (event, key), a due-set, and the dead letters.

`wa:cb:event:<event id>:<key>` holds the key name, the JSON body, the attempts so far, when the
first attempt was due and the last error; `wa:cb:due` scores each entry by when its next attempt
is due. A worker takes an entry by `SET NX` of `wa:cb:lock:<entry>` for a lease longer than a
POST can take, and it stays in the due-set until it is delivered or re-scheduled: a worker that
dies mid-POST leaves it due, and another takes it once the lease ends (at least once). An entry
out of attempts moves to `wa:cb:dead` (scored by when), where `wa-dispatch callbacks` finds it.
Only the key's name is stored, never its secret.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis

EVENT_PREFIX = "wa:cb:event:"
LOCK_PREFIX = "wa:cb:lock:"
DUE = "wa:cb:due"
DEAD = "wa:cb:dead"


@dataclass(frozen=True)
class Pending:
    """One event on its way to one key's callback."""

    entry_id: str
    key: str
    body: str
    attempts: int
    first: float  # when the first attempt was due: the retry window starts here
    error: str | None = None

    @property
    def event(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.body))


class Outbox:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl  # how long an entry (pending or dead) is kept at most

    @staticmethod
    def entry_id(event_id: str, key: str) -> str:
        return f"{event_id}:{key}"

    def queue(self, pipe: Any, event: dict[str, Any], key: str, now: float) -> None:
        """Add `event` for `key` to a caller's pipeline (so it goes with what records the change).
        An entry already waiting is left as it is: the same event applied twice is one entry."""
        entry = EVENT_PREFIX + self.entry_id(event["id"], key)
        pipe.hsetnx(entry, "key", key)
        pipe.hsetnx(entry, "body", json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        pipe.hsetnx(entry, "attempts", 0)
        pipe.hsetnx(entry, "first", now)
        pipe.expire(entry, self.ttl)
        pipe.zadd(DUE, {self.entry_id(event["id"], key): now}, nx=True)

    def add(self, events: list[tuple[dict[str, Any], str]], now: float | None = None) -> None:
        if not events:
            return
        pipe = self.redis.pipeline(transaction=True)
        for event, key in events:
            self.queue(pipe, event, key, time.time() if now is None else now)
        pipe.execute()

    def due(self, now: float, count: int) -> list[str]:
        return cast(list[str], self.redis.zrangebyscore(DUE, "-inf", now, start=0, num=count))

    def take(self, entry_id: str, lease: float) -> Pending | None:
        """The entry, when this worker is the one to attempt it now (None: taken, or gone)."""
        if not self.redis.set(LOCK_PREFIX + entry_id, 1, nx=True, px=int(lease * 1000)):
            return None
        found = self.get(entry_id)
        if found is None:  # delivered meanwhile, or expired: nothing to do
            pipe = self.redis.pipeline(transaction=True)
            pipe.zrem(DUE, entry_id)
            pipe.delete(LOCK_PREFIX + entry_id)
            pipe.execute()
        return found

    def get(self, entry_id: str) -> Pending | None:
        raw = cast(dict[str, str], self.redis.hgetall(EVENT_PREFIX + entry_id))
        if not raw.get("body"):
            return None
        return Pending(
            entry_id, raw["key"], raw["body"], int(raw["attempts"]), float(raw["first"]), raw.get("error")
        )

    def delivered(self, entry_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(DUE, entry_id)
        pipe.delete(EVENT_PREFIX + entry_id, LOCK_PREFIX + entry_id)
        pipe.execute()

    def again(self, entry_id: str, at: float, error: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(EVENT_PREFIX + entry_id, "attempts", 1)
        pipe.hset(EVENT_PREFIX + entry_id, "error", error)
        pipe.zadd(DUE, {entry_id: at}, xx=True)
        pipe.delete(LOCK_PREFIX + entry_id)
        pipe.execute()

    def bury(self, entry_id: str, error: str, now: float) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hincrby(EVENT_PREFIX + entry_id, "attempts", 1)
        pipe.hset(EVENT_PREFIX + entry_id, "error", error)
        pipe.zrem(DUE, entry_id)
        pipe.zadd(DEAD, {entry_id: now})
        pipe.delete(LOCK_PREFIX + entry_id)
        pipe.execute()

    def dead(self, key: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters, newest first: entry id, key, event id and type, attempts, last error, when."""
        ids = cast(list[tuple[str, float]], self.redis.zrevrange(DEAD, 0, -1, withscores=True))
        shown = []
        for entry_id, when in ids:
            found = self.get(entry_id)
            if found is None:
                self.redis.zrem(DEAD, entry_id)  # expired
                continue
            if key is not None and found.key != key:
                continue
            event = found.event
            shown.append(
                {
                    "entry_id": entry_id,
                    "key": found.key,
                    "event_id": event["id"],
                    "type": event["type"],
                    "attempts": found.attempts,
                    "error": found.error,
                    "dead_since": when,
                }
            )
            if len(shown) >= limit:
                break
        return shown

    def redrive(self, entry_ids: list[str], now: float | None = None) -> list[str]:
        """Dead letters due again at once, with a fresh retry window; the ids that were dead."""
        now = time.time() if now is None else now
        moved = []
        for entry_id in entry_ids:
            if self.redis.zrem(DEAD, entry_id) and self.redis.exists(EVENT_PREFIX + entry_id):
                pipe = self.redis.pipeline(transaction=True)
                pipe.hset(EVENT_PREFIX + entry_id, mapping={"attempts": 0, "first": now})
                pipe.expire(EVENT_PREFIX + entry_id, self.ttl)
                pipe.zadd(DUE, {entry_id: now})
                pipe.execute()
                moved.append(entry_id)
        return moved

    def pending(self) -> int:
        return int(self.redis.zcard(DUE))
