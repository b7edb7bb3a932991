"""Kombu's Redis transport, taking a backlog off the queue many messages per round trip.

Two changes, both found in py-spy profiles of a worker (`make bench`, the isolation fault test):

- Kombu takes one message per BRPOP and then records it as unacked in a second round trip, both
  on the worker's main thread. With 64 pool threads holding the GIL, every socket call there
  waits for the GIL again: one worker took only about 70 messages a second off a backlog (less
  than one number's default rate), so a slow sender's backlog could not even be parked. Here,
  after the BRPOP, one Lua call records that message as unacked and pops and records up to
  FETCH_BATCH more from the same queue (never more than the prefetch credit left), atomically,
  so a crash leaves every popped message in the unacked set for kombu's restore, as before.
- Kombu builds a fresh `redis.Redis` for every ack and unacked-index write, and redis-py's
  constructor copies its response-callback table each time (6 to 8 % of a worker's CPU per
  message); one client per channel shares the same pool and does the same work, and the acks
  the pool threads make at the same time go out in one round trip (worker.redis_conn.GroupCommit).
- A publish can carry other commands in its own transaction (`before_publish`): the intent
  ledger's record of the task (worker.recovery.ledger) goes with the message, not a round trip
  before it.

What a lost connection leaves unsettled is settled on the next connection (`_Unsettled`), found
in `make test`'s Redis restart: Redis writes a BRPOP's pop to its append-only file and can exit
(SIGTERM, SHUTDOWN) before it writes the reply, so the message is in no queue and unacked by no
one. Kombu's stock transport has the same gap. What a worker can know, it settles itself: a fetch
whose reply never came back was recorded or not (its BRPOP message is pushed back, or its batch
restored); an ack that failed is sent again, and its prefetch credit is never kept from the
consumer. What it cannot know (a BRPOP's reply that never came) is left to the ledger's audit,
asked for at once (`pop_gap_hooks`); a publish the ledger does not know (an app's own `send_task`)
is lost in that case, as the README says of a worker that dies in the same gap.

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
from time import time
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
FETCH_BATCH = 32  # messages a backlog gives up per round trip, beside the one BRPOP returned

# KEYS: the queue's list, the unacked index, the unacked hash. ARGV: now, how many more to pop,
# then the message BRPOP returned. Each message is recorded as kombu's QoS.append records it:
# index score = when it was taken, hash value = [payload, exchange, routing_key].
_FETCH = """
local now, more = ARGV[1], tonumber(ARGV[2])
local items = {ARGV[3]}
if more > 0 then
  local popped = redis.call('RPOP', KEYS[1], more)
  if popped then
    for _, item in ipairs(popped) do items[#items + 1] = item end
  end
end
for _, item in ipairs(items) do
  local properties = cjson.decode(item)['properties']
  local delivery = properties['delivery_info']
  local tag = properties['delivery_tag']
  redis.call('ZADD', KEYS[2], now, tag)
  redis.call('HSET', KEYS[3], tag, '[' .. item .. ',' .. cjson.encode(delivery['exchange']) .. ','
    .. cjson.encode(delivery['routing_key']) .. ']')
end
return items
"""


_before = threading.local()

# Called, once Redis answers again, after a connection was lost with a BRPOP pending: its message
# may be nowhere (worker.lifecycle asks the ledger audit to run at once).
pop_gap_hooks: list[Callable[[], None]] = []


class _Deliveries:
    """Messages this process handed to its consumer: the stall watchdog's sign of progress."""

    count = 0


deliveries = _Deliveries()


@dataclass(frozen=True)
class _LostFetch:
    """A fetch whose reply did not come back: the BRPOP's message was in hand, the script that
    records it (and pops the batch behind it) may or may not have run."""

    key: str
    item: str
    tag: str
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
    event loop's thread, before its next BRPOP). Shared by every connection of the process: a
    reconnect is a new transport, with new channels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fetches: list[_LostFetch] = []
        self.acks: list[_LostAck] = []
        self.restores: list[str] = []  # tags a requeue could not put back
        self.pop_gap = False

    def pending(self) -> bool:
        return bool(self.fetches or self.acks or self.restores or self.pop_gap)

    def settle(self, client: Any, channel: Any) -> None:
        with self._lock:
            fetches, self.fetches = self.fetches, []
            acks, self.acks = self.acks, []
            restores, self.restores = self.restores, []
            pop_gap, self.pop_gap = self.pop_gap, False
        try:
            while fetches:
                _settle_fetch(client, channel, fetches[0])
                fetches.pop(0)
            while restores:
                channel.qos.restore_by_tag(restores[0], client=client)
                restores.pop(0)
            if acks:
                with client.pipeline(transaction=False) as pipe:
                    for ack in acks:
                        pipe.zrem(ack.index, ack.tag).hdel(ack.unacked, ack.tag)
                    pipe.execute()
                acks = []
            if pop_gap:
                for hook in pop_gap_hooks:
                    hook()
                pop_gap = False
        except channel.connection_errors:
            with self._lock:  # Redis is still away: the next BRPOP's turn tries again
                self.fetches[:0], self.acks[:0], self.restores[:0] = fetches, acks, restores
                self.pop_gap = self.pop_gap or pop_gap
        except Exception:  # a Redis error that will not pass: logged, never the event loop's
            log.warning("unsettled_dropped", fetches=len(fetches), acks=len(acks), exc_info=True)


unsettled = _Unsettled()


def _settle_fetch(client: Any, channel: Any, lost: _LostFetch) -> None:
    """The script records the BRPOP's message first, with everything else it pops, in one step: if
    that message is unacked, the script ran and what it recorded goes back to the queue (none of it
    was delivered); if not, the message goes back as it came."""
    if client.hexists(lost.unacked, lost.tag):
        found = client.zrangebyscore(lost.index, lost.taken, lost.taken)
        tags = [tag.decode() if isinstance(tag, bytes) else tag for tag in found]
        # The BRPOP's message last: while it is unacked, a try cut short is taken up again here.
        for tag in sorted(tags, key=lambda tag: tag == lost.tag):
            channel.qos.restore_by_tag(tag, client=client)
        log.warning("fetch_reply_lost", recorded=len(tags), restored=len(tags))
    else:
        client.rpush(lost.key, lost.item)  # the right end: the next one taken
        log.warning("fetch_reply_lost", recorded=0, restored=1)


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
        self._recorded: dict[str, bool] = {}
        self.handlers["BRPOP"] = self._fetch_read
        settings = get_settings()
        self._durability = Durability(settings.replicas_waited, settings.replica_wait_ms)

    def _brpop_start(self, timeout: Any = None) -> None:
        """Kombu's, after settling what a lost connection left (a no-op test when nothing did)."""
        if unsettled.pending():
            unsettled.settle(self._shared_client, self)
        super()._brpop_start(timeout)

    def _on_connection_disconnect(self, connection: Any) -> None:
        if connection is not None and self._in_poll is connection:
            unsettled.pop_gap = True  # the BRPOP may have popped a message we never read
        super()._on_connection_disconnect(connection)

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
        """Kombu's `_brpop_read`, delivering the BRPOP's message and the batch fetched behind it."""
        if self.global_keyprefix:
            return bool(self._brpop_read(**options))
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next iteration reconnects
                raise
            if not reply:
                raise kombu_redis.Empty()
            key, item = reply
            key = key.decode() if isinstance(key, bytes) else key
            queue = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            credit = self.qos.can_consume_max_estimate()
            more = FETCH_BATCH if credit is None else max(0, min(FETCH_BATCH, credit - 1))
            taken = repr(time())
            try:
                raws = self._fetch(keys=[key, *self._unacked_keys], args=[taken, more, item])
            except self.connection_errors:
                raw = item.decode() if isinstance(item, bytes) else item
                tag = loads(raw)["properties"]["delivery_tag"]
                unsettled.fetches.append(_LostFetch(key, raw, tag, taken, *self._unacked_keys))
                raise
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
