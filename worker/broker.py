"""Kombu's Redis transport, with one client per channel instead of a new one per command.

Kombu builds a fresh `redis.Redis` for every ack and every unacked-index write
(`Channel.conn_or_acquire`), and redis-py's constructor copies its response-callback table each
time: measured at 6 to 8 % of a worker's CPU per message (py-spy, `make bench`). The clients all
share the channel's connection pool and a `redis.Redis` is safe to share between threads, so one
per channel does the same work. The asynchronous client (BRPOP, the event loop's own
connection) is left as kombu makes it.

`install` makes it the transport of `redis://` and `rediss://` URLs in this process, so broker
URLs, Flower's broker view and `celery inspect` see the same scheme as before.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.utils.objects import cached_property

NAME = "worker.broker:Transport"


class Channel(kombu_redis.Channel):
    @cached_property
    def _shared_client(self) -> Any:
        return super()._create_client()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        return self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Before the first connection: kombu caches the class an alias resolves to."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = NAME
