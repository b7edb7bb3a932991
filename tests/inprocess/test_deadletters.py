"""Dead letters: kept, listed newest first, reopened for re-drive and restored when it fails."""

from __future__ import annotations

import redis

from worker.delivery.deadletters import DeadLetters
from worker.delivery.idempotency import PREFIX, IdempotencyStore
from worker.recovery.nodes import NODE, WORKERS

INTENT = {"to": "+919999595313", "type": "text", "text": {"body": "hi"}}


def failed(r: redis.Redis, dead: DeadLetters, key: str, code: int) -> None:
    store = IdempotencyStore(r, 3600, stale_after=60, liveness=(WORKERS, NODE, 10.0))
    store.begin(key, "t")
    error = {"kind": "permanent", "code": code, "error": f"({code})"}
    store.failed(key, 1, error)
    dead.add(key, INTENT, error, 1, f"task-{key}")


def test_listed_newest_first_and_filtered(r: redis.Redis) -> None:
    dead = DeadLetters(r, ttl=3600)
    failed(r, dead, "a", 131047)
    failed(r, dead, "b", 131026)
    assert [e["idempotency_key"] for e in dead.list()] == ["b", "a"]
    assert [e["idempotency_key"] for e in dead.list(code=131047)] == ["a"]
    assert dead.list(kind="ambiguous") == []


def test_reopen_restore_and_remove(r: redis.Redis) -> None:
    dead = DeadLetters(r, ttl=3600)
    failed(r, dead, "a", 131047)
    entry = dead.reopen("a")
    assert entry is not None and entry["intent"] == INTENT
    assert r.hget(PREFIX + "a", "state") == "pending"
    dead.restore("a")  # the enqueue failed
    assert r.hget(PREFIX + "a", "state") == "failed" and [e["idempotency_key"] for e in dead.list()] == ["a"]
    dead.reopen("a")
    dead.remove("a")  # enqueued
    assert dead.list() == [] and r.hget(PREFIX + "a", "state") == "pending"
    assert dead.reopen("unknown") is None


def test_reopen_leaves_a_sent_key_alone(r: redis.Redis) -> None:
    dead = DeadLetters(r, ttl=3600)
    store = IdempotencyStore(r, 3600, stale_after=60, liveness=(WORKERS, NODE, 10.0))
    store.begin("s", "t")
    store.sent("s", attempts=1, wamid="wamid.S", wa_id=None, to="+919999595313")
    dead.add("s", INTENT, {"kind": "ambiguous", "code": None, "error": "no answer"}, 1, "t")
    dead.reopen("s")
    assert r.hget(PREFIX + "s", "state") == "sent"


def test_old_entries_are_trimmed(r: redis.Redis) -> None:
    dead = DeadLetters(r, ttl=3600)
    failed(r, dead, "old", 131047)
    r.zadd("wa:dead:index", {"old": 1.0})  # failed long ago
    failed(r, dead, "new", 131047)
    assert [e["idempotency_key"] for e in dead.list()] == ["new"]
