"""Dead letters: every intent that ended in failure, kept past the result backend's expiry for re-drive.

Stored as one Redis hash (idempotency key -> JSON entry) plus a sorted set by failure time, so
listing is newest-first and old entries are trimmed after DISPATCH_DEAD_LETTER_TTL. An entry
holds the intent (intents never carry secrets), the error's kind, code and message, attempts,
the task id and the time. Re-driving enqueues the same intent with the same idempotency key:
a key that was in fact sent returns its kept wamid and calls nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import redis

from worker.delivery.errors import DispatchError
from worker.delivery.idempotency import DEAD_ENTRIES as ENTRIES
from worker.delivery.idempotency import DEAD_INDEX as INDEX
from worker.delivery.idempotency import PREFIX as IDEM_PREFIX
from worker.scripts import load


class DeadLetters:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self._move = load("move_state").on(client)

    @staticmethod
    def entry(
        key: str, intent: dict[str, Any], error: dict[str, Any], attempts: int, task_id: str, now: float
    ) -> dict[str, Any]:
        """One dead letter as kept (an ambiguous one is written by its record's script)."""
        return {
            "idempotency_key": key,
            "task_id": task_id,
            "failed_at": now,
            "attempts": attempts,
            "kind": error.get("kind"),
            "code": error.get("code"),
            "error": error.get("error"),
            "details": error.get("details"),
            "intent": intent,
        }

    def add(
        self, key: str, intent: dict[str, Any], error: dict[str, Any], attempts: int, task_id: str
    ) -> None:
        now = time.time()
        entry = self.entry(key, intent, error, attempts, task_id, now)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(ENTRIES, key, json.dumps(entry))
        pipe.zadd(INDEX, {key: now})
        old = self.redis.zrangebyscore(INDEX, 0, now - self.ttl)
        if old:
            pipe.hdel(ENTRIES, *old)
            pipe.zrem(INDEX, *old)
        # Entries older than the ttl go as others come; the hash itself goes a ttl after the last.
        pipe.expire(ENTRIES, self.ttl)
        pipe.expire(INDEX, self.ttl)
        pipe.execute()

    def list(
        self, code: int | None = None, kind: str | None = None, sender: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first; only those with this code, kind and sender (`default` when the intent named none)."""
        keys = cast(list[str], self.redis.zrevrange(INDEX, 0, -1))
        entries = [json.loads(raw) for raw in self.redis.hmget(ENTRIES, keys) if raw] if keys else []
        wanted = {"code": code, "kind": kind, "sender": sender}
        chosen = [e for e in entries if all(v is None or _field(e, k) == v for k, v in wanted.items())]
        return chosen[:limit]

    def reopen(self, key: str) -> dict[str, Any] | None:
        """The entry to re-drive, its idempotency record made sendable again; None when unknown.
        The entry stays until `remove`, after the intent is enqueued: a failed enqueue loses nothing."""
        raw = self.redis.hget(ENTRIES, key)
        if raw is None:
            return None
        self._move([IDEM_PREFIX + key], ["failed", "pending"])
        return json.loads(raw)

    def undelivered(self, key: str, error: dict[str, Any]) -> None:
        """A `sent` key whose message failed after all (a status webhook) becomes `failed` with
        that error, so it can be re-driven."""
        self._move([IDEM_PREFIX + key], ["sent", "failed", json.dumps(error)])

    def restore(self, key: str) -> None:
        """Undo `reopen` when the enqueue failed: the record is `failed` again, as its entry says."""
        self._move([IDEM_PREFIX + key], ["pending", "failed"])

    def remove(self, key: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(ENTRIES, key)
        pipe.zrem(INDEX, key)
        pipe.execute()

    def redrive(self, keys: Iterable[str], enqueue: Callable[[dict[str, Any]], str]) -> Iterator[Redriven]:
        """Enqueue each key's intent again under its own idempotency key (`enqueue` returns the
        task id; a key already sent is a no-op for the worker). A dead letter is removed only once
        its intent is enqueued; when the enqueue fails its record is `failed` again, as before."""
        for key in keys:
            entry = self.reopen(key)
            if entry is None:
                yield Redriven(key, None, "no dead letter with this key")
                continue
            try:
                task_id = enqueue({**entry["intent"], "idempotency_key": key})
            except DispatchError as exc:
                self.restore(key)
                yield Redriven(key, None, str(exc))
            else:
                self.remove(key)
                yield Redriven(key, task_id, None)


@dataclass(frozen=True)
class Redriven:
    """One key's re-drive: the new task's id, or why there is none."""

    idempotency_key: str
    task_id: str | None
    error: str | None


def _field(entry: dict[str, Any], name: str) -> Any:
    if name == "sender":
        return entry["intent"].get("sender") or "default"
    return entry[name]
