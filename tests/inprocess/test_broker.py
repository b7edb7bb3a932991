"""The Redis transport's batched fetch: a backlog leaves the queue many messages per round trip,
each recorded as unacknowledged before it is delivered, so none is lost or delivered twice; and a
ledgered publish: the record and the message in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue

from devtools.localstack import RedisServer
from worker import broker
from worker.recovery.ledger import Ledger, LedgerEntry

QUEUE = Queue("batch-test", Exchange("batch-test"), routing_key="batch-test")


@pytest.fixture
def conn(redis_server: RedisServer, r: redis.Redis) -> Iterator[Connection]:
    broker.install()
    with Connection(f"redis://127.0.0.1:{redis_server.port}/1") as connection:
        yield connection


def publish(conn: Connection, n: int) -> None:
    with conn.channel() as channel:
        producer = Producer(channel, QUEUE.exchange, routing_key=QUEUE.routing_key)
        QUEUE(channel).declare()
        for i in range(n):
            producer.publish({"i": i}, serializer="json")


def calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def fetch_calls(r: redis.Redis) -> int:
    return calls(r, "evalsha")


def test_a_backlog_is_taken_in_batches_and_each_message_is_delivered_once(
    conn: Connection, r: redis.Redis
) -> None:
    publish(conn, 100)
    r.config_resetstat()
    received: list[Message] = []
    with Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: received.append(message)], prefetch_count=100
    ):
        while len(received) < 100:
            conn.drain_events(timeout=5)
        assert r.llen("batch-test") == 0
        # Unacked until acknowledged, as kombu's own QoS keeps them (its restore reads these).
        assert r.hlen("unacked") == 100 and r.zcard("unacked_index") == 100
        for message in received:
            message.ack()
    assert sorted(m.payload["i"] for m in received) == list(range(100))
    # 1 + 32 per round trip: 100 messages in 4 fetches, not 100 (and a first NOSCRIPT try).
    assert fetch_calls(r) <= 5
    assert r.hlen("unacked") == 0 and r.zcard("unacked_index") == 0


def test_no_more_than_the_prefetch_credit_is_taken(conn: Connection, r: redis.Redis) -> None:
    publish(conn, 50)
    received: list[Message] = []
    with Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: received.append(message)], prefetch_count=10
    ):
        conn.drain_events(timeout=5)
        assert len(received) == 10 and r.llen("batch-test") == 40
        # What a dead worker leaves is its unacked set: the message and where it came from.
        payload, exchange, routing_key = json.loads(str(r.hget("unacked", received[0].delivery_tag)))
        assert payload["properties"]["delivery_tag"] == received[0].delivery_tag
        assert (exchange, routing_key) == ("batch-test", "batch-test")
        for message in received:
            message.ack()


def test_a_message_not_acknowledged_is_put_back_at_close(conn: Connection, r: redis.Redis) -> None:
    publish(conn, 40)
    received: list[Message] = []
    with Consumer(
        conn, [QUEUE], callbacks=[lambda body, message: received.append(message)], prefetch_count=40
    ):
        while len(received) < 40:
            conn.drain_events(timeout=5)
        for message in received[:30]:
            message.ack()
    conn.release()
    assert r.llen("batch-test") == 10 and r.hlen("unacked") == 0


def test_a_ledgered_publish_writes_its_record_and_its_message_in_one_transaction(
    conn: Connection, r: redis.Redis
) -> None:
    ledger = Ledger(r, beside_broker=True)
    entry = LedgerEntry("worker.tasks.send_message", {"to": "+919876500001"}, QUEUE.name, None)
    with conn.channel() as channel:
        producer = Producer(channel, QUEUE.exchange, routing_key=QUEUE.routing_key)
        QUEUE(channel).declare()
        before = {name: calls(r, name) for name in ("exec", "hset", "lpush")}
        with ledger.recording("t-1", entry):
            producer.publish({"i": 1}, serializer="json")

    assert {name: calls(r, name) - before[name] for name in before} == {"exec": 1, "hset": 1, "lpush": 1}
    assert ledger.entry("t-1") == entry and r.llen(QUEUE.name) == 1
