"""The webhook inbox: a Redis stream the web process appends raw bodies to, and workers drain.

The web process answers 200 only after XADD returned, so an accepted event is in Redis before
the sender forgets it. Workers read it through one consumer group: each entry goes to one
worker, stays pending until that worker acknowledges it, and is claimed by another worker when
the first died holding it (RECLAIM_AFTER). Applied entries are deleted, so the stream holds only
what is still to do.
"""

from __future__ import annotations

from typing import cast

import redis
import redis.asyncio

from worker.statuses.events import Source

STREAM = "wa:webhooks"
GROUP = "appliers"
# An entry a worker took but did not acknowledge for this long belongs to a dead worker: a batch
# is applied in milliseconds, so a minute is far past any live one.
RECLAIM_AFTER_MS = 60_000

InboxEntry = tuple[str, dict[str, str]]


async def accept(client: redis.asyncio.Redis, body: bytes, source: Source, received: float) -> None:
    """The durable write the web process waits for before answering 200."""
    await client.xadd(STREAM, {"body": body, "source": source.value, "received": received})


class Inbox:
    """A worker's side of the stream."""

    def __init__(self, client: redis.Redis, consumer: str) -> None:
        self.redis = client
        self.consumer = consumer

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int) -> list[InboxEntry]:
        answer = cast(
            list[tuple[str, list[InboxEntry]]],
            self.redis.xreadgroup(GROUP, self.consumer, {STREAM: ">"}, count=count, block=block_ms),
        )
        return answer[0][1] if answer else []

    def reclaim(self, count: int) -> list[InboxEntry]:
        """Entries a dead worker took and never acknowledged."""
        answer = self.redis.xautoclaim(STREAM, GROUP, self.consumer, RECLAIM_AFTER_MS, count=count)
        return [e for e in cast(list[InboxEntry], answer[1]) if e[1]]

    def done(self, ids: list[str]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(STREAM, GROUP, *ids)
        pipe.xdel(STREAM, *ids)
        pipe.execute()
