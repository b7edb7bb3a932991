"""The Redis transport's batched fetch: a backlog leaves the queue many messages per round trip,
each recorded as unacknowledged before it is delivered, so none is lost or delivered twice; and a
ledgered publish: the record and the message in one transaction."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue

from devtools.localstack import RedisServer, tmpdir
from worker import broker
from worker.recovery.ledger import Ledger, LedgerEntry
from worker.redis_conn import group_of

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
    # 33 per round trip: 100 messages in 4 fetches, not 100 (and a first NOSCRIPT try).
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


# --- what a lost connection leaves unsettled (issue 22.9) --------------------------------------


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, with an append-only file, that it can stop and start."""
    server = RedisServer(tmpdir("wa-broker-"), persistent=True).start()
    yield server
    server.kill()


@pytest.fixture
def unsettled() -> Iterator[None]:
    yield
    broker.unsettled.__init__()  # type: ignore[misc]  # nothing left for the next test


def consume(url: str, n: int, prefetch: int = 10, timeout: float = 10) -> list[Message]:
    """Take n messages (each acknowledged) through a fresh connection, as a reconnected worker does."""
    received: list[Message] = []
    with (
        Connection(url) as connection,
        Consumer(
            connection,
            [QUEUE],
            callbacks=[lambda body, message: received.append(message)],
            prefetch_count=prefetch,
        ),
    ):
        deadline = time.monotonic() + timeout
        while len(received) < n and time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout, TimeoutError):
                connection.drain_events(timeout=0.2)
        for message in received:
            message.ack()
    return received


def test_a_wait_redis_served_and_never_answered_leaves_the_message_queued(
    own_redis: RedisServer, unsettled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis serves a pending wait and exits before it writes the reply: the cause of
    `test_redis_restarted_while_producing_and_sending`'s failures when the wait was kombu's BRPOP,
    whose pop was then in the append-only file, the message in no queue and unacked by no one
    (only the ledger knew it, and only of the project's own publishes). The wait takes nothing."""
    broker.install()
    # An idle wait lasts 0.1 s; here it must still be pending when the test pushes the message.
    monkeypatch.setattr(broker, "PEEK_TIMEOUT", 10)
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    publish(Connection(url), 1)  # the queue's binding, and a message as kombu writes it
    body = own_redis.client().rpop(QUEUE.name)
    tag = json.loads(body)["properties"]["delivery_tag"]
    with Connection(url) as connection, Consumer(connection, [QUEUE], callbacks=[], prefetch_count=10):
        with contextlib.suppress(socket.timeout, TimeoutError):
            connection.drain_events(timeout=0.1)  # the wait is sent, and waits in Redis
        assert any(c["cmd"] == "blmove" for c in own_redis.client().client_list())
        with socket.create_connection(("127.0.0.1", own_redis.port)) as raw:
            # One read for Redis: the LPUSH serves the wait, SHUTDOWN exits before replying.
            raw.sendall(resp("LPUSH", QUEUE.name, body) + resp("SHUTDOWN"))
            own_redis.proc.wait(5)  # type: ignore[union-attr]
        with pytest.raises(redis.ConnectionError):
            connection.drain_events(timeout=2)
    own_redis.start()
    client = own_redis.client()
    assert client.llen(QUEUE.name) == 1 and not client.exists("unacked")  # still queued
    [message] = consume(url, 1)
    assert message.delivery_tag == tag and client.llen(QUEUE.name) == 0


@pytest.mark.parametrize("running", [False, True], ids=["held-for-later", "running"])
def test_what_a_lost_connection_held_unacked_goes_back_through_the_next_one(
    own_redis: RedisServer, unsettled: None, monkeypatch: pytest.MonkeyPatch, running: bool
) -> None:
    """Celery closes the channel of a lost connection and drops from memory what it held for later
    (a countdown); kombu's restore at that close fails while Redis is away, and the message stayed
    in this live worker's unacked set for the visibility timeout (test_failover.py's campaign never
    got its next chunk). Now it goes back through the next connection; one a pool thread is still
    working on stays unacked, for that thread's ack."""
    broker.install()
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    publish(Connection(url), 1)
    client = own_redis.client()
    received: list[Message] = []
    connection = Connection(url)
    Consumer(connection, [QUEUE], callbacks=[lambda body, message: received.append(message)]).consume()
    connection.drain_events(timeout=5)
    [held] = received
    if running:
        monkeypatch.setattr(broker, "running", lambda: {held.delivery_tag})
    own_redis.stop()
    with contextlib.suppress(redis.ConnectionError):
        connection.release()  # the close's restore: Redis is away
    own_redis.start()
    assert client.hlen("unacked") == 1 and client.llen(QUEUE.name) == 0
    again = consume(url, 1, timeout=2)
    if running:
        assert again == [] and client.hlen("unacked") == 1
    else:
        assert [m.delivery_tag for m in again] == [held.delivery_tag] and client.hlen("unacked") == 0


def failing_fetch(channel: broker.Channel, run_script: bool) -> None:
    """The channel's next fetch script loses its reply (Redis went away), after running or before."""
    script = channel._fetch

    def fetch(**kwargs: object) -> object:
        channel.__dict__["_fetch"] = script
        if run_script:
            script(**kwargs)
        raise redis.ConnectionError("Connection closed by server.")

    channel.__dict__["_fetch"] = fetch


@pytest.mark.parametrize("run_script", [False, True], ids=["before-the-script", "after-the-script"])
def test_a_fetch_whose_reply_was_lost_is_delivered_through_the_next_connection(
    own_redis: RedisServer, unsettled: None, run_script: bool
) -> None:
    """The fetch script's reply was lost: what it recorded goes back to the queue, not left
    unacked for the visibility timeout, two hours (it ran), and nothing was taken (it did not)."""
    broker.install()
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    publish(Connection(url), 5)
    client = own_redis.client()
    with Connection(url) as connection, Consumer(connection, [QUEUE], callbacks=[], prefetch_count=10):
        failing_fetch(connection.default_channel, run_script)
        with pytest.raises(redis.ConnectionError):
            connection.drain_events(timeout=2)
        assert client.llen(QUEUE.name) == (0 if run_script else 5)
    received = consume(url, 5)
    assert sorted(m.payload["i"] for m in received) == list(range(5))
    assert client.llen(QUEUE.name) == 0 and client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0


def test_a_failed_ack_gives_its_credit_back_and_is_sent_again(
    own_redis: RedisServer, unsettled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix a failed ack kept its prefetch credit: as many failures as the prefetch
    count (16 or 64 in a worker) and the consumer never took a message again."""
    broker.install()
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    publish(Connection(url), 3)
    client = own_redis.client()
    received: list[Message] = []
    with (
        Connection(url) as connection,
        Consumer(
            connection, [QUEUE], callbacks=[lambda body, message: received.append(message)], prefetch_count=1
        ),
    ):
        connection.drain_events(timeout=5)
        channel = connection.default_channel
        group = group_of(channel._shared_client)
        monkeypatch.setattr(
            group, "execute", lambda build: (_ for _ in ()).throw(redis.ConnectionError("gone"))
        )
        with pytest.raises(redis.ConnectionError):
            received[0].ack()
        monkeypatch.undo()
        assert channel.qos.can_consume()  # the credit came back
        assert client.hlen("unacked") == 1  # and the message is still unacked in Redis
        while len(received) < 3:
            connection.drain_events(timeout=5)  # the next wait sends the lost ack first
            received[-1].ack()
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0


def resp(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def test_the_watchdog_sees_a_consumer_that_takes_nothing_while_work_waits() -> None:
    from worker.lifecycle import ConsumerWatchdog

    now, queued, taken, busy = [0.0], [5], [0], [0]

    def redis_away() -> int:
        raise redis.ConnectionError("gone")

    def dog(**kw: object) -> ConsumerWatchdog:
        return ConsumerWatchdog(
            kw.get("queued", lambda: queued[0]),  # type: ignore[arg-type]
            lambda: taken[0],
            lambda: busy[0],
            capacity=4,
            stall_after=120,
            clock=lambda: now[0],
        )

    watchdog = dog()
    now[0] = 119.0
    assert watchdog.check() is None
    now[0] = 121.0
    assert watchdog.check() == 121.0  # work waited two minutes, nothing was taken, a thread was free
    for progress in ("taken", "empty", "full"):
        taken[0], queued[0], busy[0] = 0, 5, 0
        watchdog, now[0] = dog(), 0.0
        now[0] = 100.0
        if progress == "taken":
            taken[0] = 1
        elif progress == "empty":
            queued[0] = 0
        else:
            busy[0] = 4  # every thread has a task: taking nothing is right
        assert watchdog.check() is None
        now[0] = 200.0
        taken[0], queued[0], busy[0] = taken[0], 5, 0
        assert watchdog.check() is None, progress  # the clock restarted at the progress
    watchdog, now[0] = dog(queued=redis_away), 0.0
    now[0] = 500.0
    assert watchdog.check() is None  # Redis away is not this worker's stall
