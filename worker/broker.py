"""Kombu's Redis transport, taking a backlog off the queue many messages per round trip.

Two changes, both found in py-spy profiles of a worker (`make bench`, the isolation fault test):

- Kombu takes a message with BRPOP and records it as unacked in a second round trip: a worker
  that dies with the BRPOP's reply in its socket takes the message with it (the pop gap; the
  fault test freezes a worker while it waits to show it). And it takes one message per round
  trip on the worker's main thread, where with 64 pool threads every socket call waits for the
  GIL again: one worker took only about 70 messages a second off a backlog. Here the wait takes
  nothing: `BLMOVE q q RIGHT RIGHT` returns when a queue has a message and leaves it there (a
  reply lost with a dying worker loses nothing), then one Lua call pops and records as unacked
  up to FETCH_BATCH messages from the first of the channel's queues that holds any, in kombu's
  order, never more than the prefetch credit left. A message is never off a queue without being
  in the worker's unacked set, whoever published it, so a crash leaves everything for the
  heartbeat's restore.
  The wait watches one queue (the one that last gave work); the others are looked at by the
  script every PEEK_TIMEOUT while the worker is idle.
- Kombu builds a fresh `redis.Redis` for every ack and unacked-index write, and redis-py's
  constructor copies its response-callback table each time (6 to 8 % of a worker's CPU per
  message); one client per channel shares the same pool and does the same work, and the acks
  the pool threads make at the same time go out in one round trip (worker.redis_conn.GroupCommit).
- A publish can carry other commands in its own transaction (`before_publish`): the intent
  ledger's record of the task (worker.recovery.ledger) goes with the message, not a round trip
  before it.

What a lost connection leaves unsettled is settled on the next connection (`_Unsettled`), found
in `make test`'s Redis restart: a fetch script whose reply never came back ran or did not (what
it recorded is restored); an ack that failed is sent again, and its prefetch credit is never kept
from the consumer. (Redis can also serve a pending wait and exit before it writes the reply, as
it did kombu's BRPOP, which then left the message in no queue and unacked by no one; the wait's
reply carries nothing, so that loses nothing now.)

With DISPATCH_REPLICA_ACKS a publish returns once that many replicas have the message (Redis
WAIT on the publish's connection), so an enqueue that returned survives a failover.

`install` makes it the transport of `redis://` and `rediss://` URLs in this process, so broker
URLs, Flower's broker view and `celery inspect` see the same scheme as before, and its Sentinel
twin (`SentinelTransport`: kombu's Sentinel channel under the same changes) that of `sentinel://`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from time import monotonic, time
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from worker.ops.logs import get_logger
from worker.redis_conn import Durability, FollowingConnection, durable_pipeline, group_of, short_waits
from worker.settings import get_settings

log = get_logger("whatsapp_dispatch.broker")

NAME = "worker.broker:Transport"
SENTINEL_NAME = "worker.broker:SentinelTransport"
FETCH_BATCH = 33  # messages a backlog gives up per round trip
PEEK_TIMEOUT = 0.1  # s an idle wait watches one queue before the script looks at all of them

# KEYS: the unacked index, the unacked hash, then the queues' lists in the order kombu's BRPOP
# reads them. ARGV: now, how many to pop. Pops from the first list that holds messages (as BRPOP
# does; one queue per batch, delivered under its name) and returns that list, then the messages.
# Each message is recorded as kombu's QoS.append records it: index score = when it was taken,
# hash value = [payload, exchange, routing_key].
_FETCH = """
local now, want = ARGV[1], tonumber(ARGV[2])
local items, first = {}, false
for i = 3, #KEYS do
  local popped = redis.call('RPOP', KEYS[i], want)
  if popped then
    first, items = KEYS[i], popped
    break
  end
end
for _, item in ipairs(items) do
  local properties = cjson.decode(item)['properties']
  local delivery = properties['delivery_info']
  local tag = properties['delivery_tag']
  redis.call('ZADD', KEYS[1], now, tag)
  redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. cjson.encode(delivery['exchange']) .. ','
    .. cjson.encode(delivery['routing_key']) .. ']')
end
if not first then return {} end
table.insert(items, 1, first)
return items
"""


_before = threading.local()

# The delivery tags this process's pool is working on (worker.lifecycle sets it in a worker):
# their messages are acked when their work ends, whatever happened to the connection meanwhile.
running: Callable[[], set[str]] = set


class _Deliveries:
    """Messages this process handed to its consumer: the stall watchdog's sign of progress."""

    count = 0


deliveries = _Deliveries()


@dataclass(frozen=True)
class _LostFetch:
    """A fetch script whose reply did not come back: it may or may not have run."""

    taken: str  # the script's `now`: the unacked index score of everything it recorded
    index: str
    unacked: str


@dataclass(frozen=True)
class _LostAck:
    tag: str
    index: str
    unacked: str


class _Unsettled:
    """What a lost connection left unsettled in this process, settled through the next one (the
    event loop's thread, before its next wait). Shared by every connection of the process: a
    reconnect is a new transport, with new channels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fetches: list[_LostFetch] = []
        self.acks: list[_LostAck] = []
        self.restores: list[str] = []  # tags a requeue or a channel's close could not put back

    def pending(self) -> bool:
        return bool(self.fetches or self.acks or self.restores)

    def settle(self, client: Any, channel: Any) -> None:
        with self._lock:
            fetches, self.fetches = self.fetches, []
            acks, self.acks = self.acks, []
            restores, self.restores = self.restores, []
        try:
            while fetches:
                _settle_fetch(client, channel, fetches[0])
                fetches.pop(0)
            if acks:  # before the restores: a message whose work is done is not put back
                with client.pipeline(transaction=False) as pipe:
                    for ack in acks:
                        pipe.zrem(ack.index, ack.tag).hdel(ack.unacked, ack.tag)
                    pipe.execute()
                acks = []
            while restores:
                channel.qos.restore_by_tag(restores[0], client=client)
                restores.pop(0)
        except channel.connection_errors:
            with self._lock:  # Redis is still away: the next wait's turn tries again
                self.fetches[:0], self.acks[:0], self.restores[:0] = fetches, acks, restores
        except Exception:  # a Redis error that will not pass: logged, never the event loop's
            log.warning("unsettled_dropped", fetches=len(fetches), acks=len(acks), exc_info=True)


unsettled = _Unsettled()


def _settle_fetch(client: Any, channel: Any, lost: _LostFetch) -> None:
    """What the script recorded under its `now` goes back to the queues (none of it was delivered);
    if it did not run, nothing was taken. Each restore removes its own entry: a try cut short is
    taken up again here with what is left."""
    found = client.zrangebyscore(lost.index, lost.taken, lost.taken)
    for tag in found:
        channel.qos.restore_by_tag(tag.decode() if isinstance(tag, bytes) else tag, client=client)
    log.warning("fetch_reply_lost", restored=len(found))


@contextmanager
def before_publish(build: Callable[[Any], None]) -> Iterator[None]:
    """Commands that this thread's next publish runs in its own MULTI/EXEC, before the message's
    LPUSH: one round trip, and a publish that does not reach Redis writes neither."""
    outer = getattr(_before, "build", None)
    _before.build = build
    try:
        yield
    finally:
        _before.build = outer


class QoS(kombu_redis.QoS):
    def ack(self, delivery_tag: str) -> None:
        """Kombu's ack (the message leaves the unacked index and hash), grouped with the acks other
        pool threads make at the same time: one round trip for all of them."""

        def build(pipe: Any) -> None:
            self._remove_from_indices(delivery_tag, pipe)

        try:
            group_of(self.channel._shared_client).execute(build)
        except self.channel.connection_errors:
            # Sent again through the next connection; the message stays unacked until then.
            unsettled.acks.append(_LostAck(delivery_tag, self.unacked_index_key, self.unacked_key))
            raise
        finally:
            # The work is done whatever Redis answered: a failed ack must not keep its prefetch
            # credit, or enough of them stop the consumer for good.
            VirtualQoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Kombu's reject; as `ack`, the credit comes back even when Redis did not answer."""
        try:
            super().reject(delivery_tag, requeue=requeue)
        except self.channel.connection_errors:
            if requeue:
                unsettled.restores.append(delivery_tag)
            else:
                unsettled.acks.append(_LostAck(delivery_tag, self.unacked_index_key, self.unacked_key))
            VirtualQoS.ack(self, delivery_tag)
            raise

    def restore_unacked(self, client: Any = None) -> None:
        """Kombu's, at a channel's close: what it had delivered and not acked goes back to its
        queue. Celery closes the channel of a lost connection, and drops from its memory the
        messages it held for later (a countdown: a campaign's next chunk), expecting them back;
        with Redis away the restore failed and they stayed in this live worker's unacked set, out
        of the heartbeat recovery's reach, until the visibility timeout (two hours). Found in
        test_failover.py's campaign, whose next chunk never came. What the close cannot put back
        is put back through the next connection, but for the messages a pool thread is still
        working on (they are acked when it ends: put back, they would run a second time)."""
        try:
            super().restore_unacked(client)
        except self.channel.connection_errors:
            busy = running()
            left = [tag for tag in self._delivered if tag not in busy]
            self._delivered.clear()
            unsettled.restores.extend(left)
            log.warning("restore_deferred", messages=len(left), running=len(busy))

    def append(self, message: Any, delivery_tag: str) -> None:
        """A message the fetch script already recorded needs only the in-memory bookkeeping."""
        deliveries.count += 1
        if self.channel._recorded.pop(delivery_tag, None) is not None:
            VirtualQoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError("worker.broker: global_keyprefix is not supported (the fetch script names keys)")
        self._recorded: dict[str, bool] = {}
        self._fetch_keys: list[str] = []
        self._watched: str | None = None  # the queue the wait watches: the one that last gave work
        self.handlers["BRPOP"] = self._fetch_read
        settings = get_settings()
        self._durability = Durability(settings.replicas_waited, settings.replica_wait_ms)

    def _brpop_start(self, timeout: Any = None) -> None:
        """Kombu's, after settling what a lost connection left (a no-op test when nothing did), with
        a wait that takes nothing in place of the BRPOP: it returns once the watched queue holds a
        message, or after PEEK_TIMEOUT, and `_fetch_read` takes what the queues hold. Kombu still
        calls the pending command "BRPOP" (its handler, its health check and its pause)."""
        if unsettled.pending():
            unsettled.settle(self._shared_client, self)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._fetch_keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        watched = self._watched if self._watched in self._fetch_keys else self._fetch_keys[0]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]  # kombu declares it None
        self.client.connection.send_command("BLMOVE", watched, watched, "RIGHT", "RIGHT", PEEK_TIMEOUT)

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """Kombu's publish (LPUSH, and its queue expiry), with what `before_publish` asked for in
        the same transaction; used once (kombu's retry of a failed publish carries it again).
        With a Durability, the publish returns once the replicas have it."""
        build = getattr(_before, "build", None)
        durability = short_waits.policy(self._durability)
        if (build is None and not durability.replicas) or kwargs.get("_publish_batch") is not None:
            return super()._put(queue, message, **kwargs)
        with self.conn_or_acquire() as client:
            pipe = durable_pipeline(client, durability)
            if build is not None:
                build(pipe)
            pipe.lpush(
                self._q_for_pri(queue, self._get_message_priority(message, reverse=False)), dumps(message)
            )
            if self._expires and queue in self._expires:
                for priority in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, priority), self._expires[queue])
            pipe.execute()
        short_waits.note(durability, getattr(pipe, "acked", None))
        _before.build = None
        return None

    @cached_property
    def _shared_client(self) -> Any:
        return super()._create_client()

    @cached_property
    def _fetch(self) -> Any:
        return self._shared_client.register_script(_FETCH)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        return self._shared_client

    def _fetch_read(self, **options: Any) -> bool:
        """Kombu's `_brpop_read`: the wait's answer read, then the script takes and records a batch
        (whatever the wait saw: another worker may have taken it, another queue may hold work)."""
        try:
            try:
                self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next iteration reconnects
                raise
            credit = self.qos.can_consume_max_estimate()
            want = FETCH_BATCH if credit is None else max(1, min(FETCH_BATCH, credit))
            taken = repr(time())
            try:
                reply = self._fetch(keys=[*self._unacked_keys, *self._fetch_keys], args=[taken, want])
            except self.connection_errors:
                unsettled.fetches.append(_LostFetch(taken, *self._unacked_keys))
                raise
            if not reply:
                raise kombu_redis.Empty()
            key, *raws = reply
            self._watched = key = key.decode() if isinstance(key, bytes) else key
            queue = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            payloads = [loads(raw) for raw in raws]
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu's "no BRPOP pending"
            self._flush_brpop_reauth()
        self._deliver_all(payloads, queue)
        return True

    @property
    def _unacked_keys(self) -> list[str]:
        return [self.unacked_index_key, self.unacked_key]

    def _deliver_all(self, payloads: list[dict[str, Any]], queue: str) -> None:
        tags = [payload["properties"]["delivery_tag"] for payload in payloads]
        self._recorded.update(dict.fromkeys(tags, True))
        for done, payload in enumerate(payloads):
            try:
                self.connection._deliver(payload, queue)
            except BaseException:
                # What was fetched behind a message that failed goes back to the head of its queue.
                for tag in tags[done + 1 :]:
                    self._recorded.pop(tag, None)
                    self.qos.restore_by_tag(tag, leftmost=True)
                raise


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The channel above over kombu's Sentinel channel: its pools ask the Sentinels for the
    primary (master_name, sentinel_kwargs from the transport options); the fetch, the grouped
    acks and the publish's MULTI are the same, on whichever server is the primary."""

    connection_class = FollowingConnection


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def install() -> None:
    """Before the first connection: kombu caches the class an alias resolves to."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = NAME
    TRANSPORT_ALIASES["sentinel"] = SENTINEL_NAME
