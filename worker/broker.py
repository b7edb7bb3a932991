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

`install` makes it the transport of `redis://` and `rediss://` URLs in this process, so broker
URLs, Flower's broker view and `celery inspect` see the same scheme as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import time
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS
from kombu.utils.json import dumps, loads
from kombu.utils.objects import cached_property

from worker.redis_conn import group_of

NAME = "worker.broker:Transport"
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

        group_of(self.channel._shared_client).execute(build)
        VirtualQoS.ack(self, delivery_tag)

    def append(self, message: Any, delivery_tag: str) -> None:
        """A message the fetch script already recorded needs only the in-memory bookkeeping."""
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

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """Kombu's publish (LPUSH, and its queue expiry), with what `before_publish` asked for in
        the same transaction; used once (kombu's retry of a failed publish carries it again)."""
        build = getattr(_before, "build", None)
        if build is None or kwargs.get("_publish_batch") is not None:
            return super()._put(queue, message, **kwargs)
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=True)
            build(pipe)
            pipe.lpush(
                self._q_for_pri(queue, self._get_message_priority(message, reverse=False)), dumps(message)
            )
            if self._expires and queue in self._expires:
                for priority in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, priority), self._expires[queue])
            pipe.execute()
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
            payloads = [
                loads(raw) for raw in self._fetch(keys=[key, *self._unacked_keys], args=[time(), more, item])
            ]
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


def install() -> None:
    """Before the first connection: kombu caches the class an alias resolves to."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = NAME
