"""The recoverer against a real Redis: the ledger audit sees messages waiting in kombu's priority
lists, and the recovery lock is released only by the node that holds it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from devtools.localstack import RedisServer
from worker import broker
from worker.app import app
from worker.recovery.ledger import INDEX, Ledger, LedgerEntry
from worker.recovery.recoverer import LOCK, Recoverer
from worker.settings import Settings

QUEUE = Queue("whatsapp", Exchange("whatsapp"), routing_key="whatsapp")
PRIORITIES = (0, 3, 6, 9)


@pytest.fixture
def conn(redis_server: RedisServer, r: redis.Redis) -> Iterator[Connection]:
    broker.install()
    with Connection(f"redis://127.0.0.1:{redis_server.port}/1") as connection:
        yield connection


def recoverer(r: redis.Redis, node: str, republished: list[str]) -> Recoverer:
    """A node's recoverer with the production settings (a Redis broker, 10 s audit grace)."""
    settings = Settings(REDIS_URL="redis://127.0.0.1:1/1")
    return Recoverer(app, r, settings, node, lambda task_id: republished.append(task_id) or True)


def test_a_backlog_of_prioritised_intents_is_never_taken_for_lost(conn: Connection, r: redis.Redis) -> None:
    ledger = Ledger(r, beside_broker=True)
    with conn.channel() as channel:
        producer = Producer(channel, QUEUE.exchange, routing_key=QUEUE.routing_key)
        QUEUE(channel).declare()
        for i, priority in enumerate(PRIORITIES * 5):
            entry = LedgerEntry(
                "worker.tasks.send_message", {"to": "+919876500001"}, QUEUE.name, None, priority
            )
            with ledger.recording(f"t-{i}", entry):
                producer.publish({"i": i}, serializer="json", headers={"id": f"t-{i}"}, priority=priority)
    assert {key for key in r.keys("whatsapp*")} > {"whatsapp"}  # kombu's priority lists hold most
    # As if the backlog had waited 30 s: past the audit's grace (a wait no user sits through).
    r.zadd(INDEX, {f"t-{i}": time.time() - 30 for i in range(len(PRIORITIES) * 5)})
    republished: list[str] = []
    node = recoverer(r, "node-a", republished)
    node.registry.beat("node-a")
    for _ in range(2):  # two audits, as a minute apart
        node.audit()
    assert republished == []
    assert sum(r.llen(key) for key in r.keys("whatsapp*")) == len(PRIORITIES) * 5


def test_a_tick_that_outlived_its_lock_does_not_release_another_nodes(r: redis.Redis) -> None:
    slow = recoverer(r, "node-a", [])
    slow.tick()
    assert r.get(LOCK) is None  # a tick within its lock's life releases it

    def outlives_its_lock() -> list[str]:
        r.delete(LOCK)  # the lock's life ran out while node-a was still at work ...
        assert r.set(LOCK, "node-b", nx=True)  # ... and node-b took it
        return []

    slow.registry.dead = outlives_its_lock  # type: ignore[method-assign]
    slow.tick()
    assert r.get(LOCK) == "node-b"  # node-b still holds it: node-a did not delete it
