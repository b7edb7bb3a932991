"""The Redis clients for the project's own state (idempotency, limits, breaker, dead letters, ledger).

The workers' client retries a dropped connection with backoff for about 20 seconds, so a Redis
restart or fail-over pauses a send instead of failing it. An app's enqueue gives up as soon as
the publish itself would (DISPATCH_PUBLISH_MAX_RETRIES), so `EnqueueError` comes as promptly.
Every user of a client in a process shares its `GroupCommit` (`group_of`), so the pool threads'
claims, marks, outcomes and settles share round trips.

A `sentinel://` URL (worker.redis_urls) gives a client that asks the Sentinels for the primary on
every new connection and drops its connections when the primary moves (redis-py's Sentinel
pool), so every client here follows a failover with the same retries as a restart.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import structlog
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.connection import Connection
from redis.driver_info import DriverInfo
from redis.exceptions import NoScriptError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from worker.process_local import process_local
from worker.redis_urls import is_sentinel, sentinels
from worker.settings import Settings, get_settings

log = structlog.get_logger("whatsapp_dispatch.redis")


class FollowingConnection(SentinelManagedConnection):
    """redis-py's Sentinel connection, asking the Sentinels again when it reconnects after losing
    its server. redis-py 8 reconnects a command's connection inside its retries through
    `connect_check_health`, which keeps the address it had: found in tests/faults/test_failover.py,
    every retry of a send's write went to the dead primary for 20 s, after the Sentinels had
    named the new one within a second."""

    _rediscover = False

    def connect_to(self, address: Any) -> None:
        self._rediscover = False
        super().connect_to(address)

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        super().disconnect(*args, **kwargs)
        self._rediscover = True

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self._sock and self._rediscover and self.connection_pool.is_master:
            self._rediscover = False
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (each new connection goes to the primary the Sentinels name) that
    waits for a free connection, as the state's blocking pool does, instead of failing."""


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """The connections to the Sentinels themselves: short timeouts, so a Sentinel host that is gone
    holds up finding the primary by seconds, and their password (DISPATCH_SENTINEL_PASSWORD)."""
    kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if settings.sentinel_password is not None:
        kwargs["password"] = settings.sentinel_password.get_secret_value()
    return kwargs


def connect(
    url: str,
    settings: Settings,
    variable: str = "REDIS_URL",
    pool_class: type[redis.ConnectionPool] | None = None,
    **kwargs: Any,
) -> redis.Redis:
    """A client of the Redis `url` names: the server itself, or the primary its Sentinels name.
    `pool_class`: the pool for a server's URL (the Sentinel pool's blocking twin for Sentinels)."""
    if is_sentinel(url):
        target = sentinels(url, variable)
        manager = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs(settings))
        blocking = pool_class is not None and issubclass(pool_class, redis.BlockingConnectionPool)
        return manager.master_for(
            settings.sentinel_master,
            connection_pool_class=BlockingSentinelPool if blocking else SentinelConnectionPool,
            connection_class=FollowingConnection,
            **target.master_kwargs(),
            **kwargs,
        )
    if pool_class is not None:
        return redis.Redis(connection_pool=pool_class.from_url(url, **kwargs))
    return redis.Redis.from_url(url, **kwargs)


def connect_async(url: str, settings: Settings, **kwargs: Any) -> redis.asyncio.Redis:
    """`connect` for asyncio (the web process)."""
    if is_sentinel(url):
        target = sentinels(url, "REDIS_URL")
        manager = redis.asyncio.sentinel.Sentinel(
            list(target.hosts), sentinel_kwargs=sentinel_kwargs(settings)
        )
        return manager.master_for(settings.sentinel_master, **target.master_kwargs(), **kwargs)
    return redis.asyncio.Redis.from_url(url, **kwargs)


@process_local
def get_redis() -> redis.Redis:
    # A blocking pool: with hundreds of threads a caller waits for a free connection rather than
    # failing with "Too many connections".
    settings = get_settings()
    return connect(
        settings.state_redis_url,
        settings,
        "CELERY_RESULT_BACKEND" if settings.result_backend else "REDIS_URL",
        pool_class=redis.BlockingConnectionPool,
        max_connections=512,
        timeout=30,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=2,
        health_check_interval=30,
        # Built once: otherwise redis-py reads its version from the package metadata on disk for
        # every connection it opens (hundreds, one per busy thread).
        driver_info=DriverInfo(),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=25),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@process_local
def get_enqueue_redis() -> redis.Redis:
    settings = get_settings()
    return connect(
        settings.state_redis_url,
        settings,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=2,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.2), retries=settings.publish_max_retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


_groups_lock = threading.Lock()


def group_of(client: redis.Redis) -> GroupCommit:
    """The one GroupCommit of this client, so every user of a client in a process shares it. Kept
    on the client, so it goes when the client goes (a broker channel's, at each reconnect)."""
    group: GroupCommit | None = getattr(client, "_group_commit", None)
    if group is not None:  # asked on every ack and settle: no lock once it exists
        return group
    with _groups_lock:
        group = getattr(client, "_group_commit", None)
        if group is None:
            settings = get_settings()
            group = GroupCommit(client, Durability(settings.replicas_waited, settings.replica_wait_ms))
            client._group_commit = group  # type: ignore[attr-defined]
        return group


Build = Callable[[Pipeline], object]  # queues commands; what it returns is ignored


@dataclass(frozen=True)
class Durability:
    """How many replicas a durable write waits for (Redis WAIT), and how long at most. Replication
    is asynchronous: a write the primary acknowledged is lost if it fails over before a replica
    has it. 0 replicas: nothing waits."""

    replicas: int = 0
    wait_ms: int = 100


class _WaitingPipeline(Pipeline):
    """A MULTI/EXEC followed by WAIT on the same connection (WAIT counts the replicas that have
    this connection's writes, so it must follow them there; inside MULTI it would not block)."""

    durability = Durability()
    acked: int | None = None

    def _execute_transaction(self, connection: Connection, commands: Any, raise_on_error: bool) -> list[Any]:
        replies = super()._execute_transaction(connection, commands, raise_on_error)
        connection.send_command("WAIT", self.durability.replicas, self.durability.wait_ms)
        self.acked = int(connection.read_response())
        return replies


def durable_pipeline(client: redis.Redis, durability: Durability) -> Pipeline:
    """A transaction pipeline of `client` whose EXEC is followed by WAIT, when replicas are asked for."""
    if not durability.replicas:
        return client.pipeline(transaction=True)
    pipe = _WaitingPipeline(client.connection_pool, client.response_callbacks, True, None)
    pipe.durability = durability
    return pipe


SHORT_WAIT_BACKOFF = 10.0  # s without waiting after the replicas did not answer in time


class _ShortWaits:
    """Durable writes the replicas had not acknowledged in time. The write stands (a replica that
    is gone does not stop sends: after a failover the new primary has none until the old one
    returns), it may be lost in a failover; for SHORT_WAIT_BACKOFF no write waits, so a primary
    without replicas does not add DISPATCH_REPLICA_WAIT_MS to every send. Logged once a minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.count = 0
        self.short_at = -SHORT_WAIT_BACKOFF
        self.logged_at = -60.0

    def policy(self, durability: Durability) -> Durability:
        """What a durable write waits for now."""
        if durability.replicas and self.clock() - self.short_at < SHORT_WAIT_BACKOFF:
            return Durability()
        return durability

    def note(self, durability: Durability, acked: int | None) -> None:
        if acked is None or acked >= durability.replicas:
            return
        self.count += 1
        now = self.short_at = self.clock()
        if now - self.logged_at >= 60:
            self.logged_at = now
            log.warning(
                "replica_wait_short",
                wanted=durability.replicas,
                acked=acked,
                short_so_far=self.count,
                waits_again_in_s=SHORT_WAIT_BACKOFF,
            )


short_waits = _ShortWaits()


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(eq=False)
class _Op:
    build: Build
    # Released when the op is done, or handed the lead: a bare lock, not an Event (an Event's
    # Condition allocates a lock per wait and another per notify).
    done: threading.Lock = field(default_factory=_held)
    replies: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    lead: bool = False  # handed the next round trip: send what waits, this op included
    durable: bool = False  # its batch waits for the replicas (Durability) before it returns

    def outcome(self) -> list[Any]:
        if self.error is not None:  # shared by the batch: each caller raises its own copy
            raise copy.copy(self.error) from self.error
        for reply in self.replies:
            if isinstance(reply, Exception):
                raise reply
        return self.replies


class GroupCommit:
    """Concurrent threads' Redis commands in one round trip (a group commit), each thread's own
    commands still in one MULTI/EXEC.

    With a hundred pool threads each making four or five round trips per message, most of a
    worker's Redis cost was per round trip, not per command: a pool checkout, the socket calls and
    the GIL taken back after each. Here a thread that finds no round trip in flight sends its
    commands at once; the threads that come while one is in flight wait, and the first of them
    sends all of theirs together when it ends. A lone caller waits for nothing.
    """

    def __init__(self, client: redis.Redis, durability: Durability = Durability()) -> None:
        self.client = client
        self.durability = durability
        self._lock = threading.Lock()
        self._waiting: list[_Op] = []
        self._busy = False
        self._scripts: dict[str, str] = {}  # sha -> source, loaded again after a Redis restart

    def execute(self, build: Build, durable: bool = False) -> list[Any]:
        """The replies to the commands `build` queues on a pipeline, or the first error among them.
        `durable`: a write that fences a send; it returns once the replicas have it (or the wait
        ran out), when the group has a Durability."""
        op = _Op(build, durable=durable)
        with self._lock:
            self._waiting.append(op)
            lead, self._busy = not self._busy, True
        if not lead:
            op.done.acquire()
        if lead or op.lead:
            self._lead()
        return op.outcome()

    def script(self, source: str) -> str:
        """Register a Lua script for `evalsha`; returns its sha."""
        sha = hashlib.sha1(source.encode()).hexdigest()
        self._scripts[sha] = source
        return sha

    def evalsha(self, pipe: Pipeline, sha: str, keys: list[str], args: list[Any]) -> None:
        """Queue a registered script (its source is loaded when Redis does not know it)."""
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)

    def call(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        """One registered script's reply."""
        return self.execute(lambda pipe: self.evalsha(pipe, sha, keys, args))[0]

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self._send(batch)
        except BaseException as exc:  # no caller may take "no replies" for success
            for op in batch:
                if op.error is None and not op.replies:
                    op.error = exc
            raise
        finally:
            for op in batch:
                op.done.release()
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].done.release()
                else:
                    self._busy = False

    def _send(self, batch: list[_Op], reload: bool = True) -> None:
        durable = short_waits.policy(self.durability) if any(op.durable for op in batch) else Durability()
        pipe = durable_pipeline(self.client, durable)
        built = [(op, *span) for op in batch if (span := _build(op, pipe)) is not None]
        if not built:
            return
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - raised in every caller of the batch
            for op, _, _ in built:
                op.error = exc
            return
        short_waits.note(durable, getattr(pipe, "acked", None))
        for op, start, stop in built:
            op.replies = replies[start:stop]
        again = [op for op, _, _ in built if any(isinstance(r, NoScriptError) for r in op.replies)]
        if again and reload:
            self._reload(again)

    def _reload(self, again: list[_Op]) -> None:
        """Redis restarted and forgot the scripts (nothing of these ops ran): load them, send once more."""
        try:
            for source in list(self._scripts.values()):
                self.client.script_load(source)
        except Exception as exc:  # noqa: BLE001 - raised in the callers whose scripts it was
            for op in again:
                op.error = exc
            return
        self._send(again, reload=False)


def _build(op: _Op, pipe: Pipeline) -> tuple[int, int] | None:
    """Queue an op's commands; their span in the pipeline, or None when its build raised."""
    start = len(pipe.command_stack)
    try:
        op.build(pipe)
    except Exception as exc:  # noqa: BLE001 - raised in that caller (a mistake of its own)
        del pipe.command_stack[start:]
        op.error = exc
        return None
    return start, len(pipe.command_stack)
