"""What the app is still to be told: written with the change, removed once told, re-told if not.

A status that moved, an inbound message or a payment status seen first is recorded in one Lua step
(worker/scripts/advance_status.lua, first_seen.lua); applying it again changes nothing, so a worker
that died between that step and enqueuing the app's task (or queuing its HTTP callback) would
lose that one call. So the same step writes a "to tell" entry: `wa:tell:entries` maps the event id
to what to tell (JSON), `wa:tell:due` scores it by when a re-tell is due (the write's time plus a
lease, DISPATCH_TELL_LEASE). The applier removes the entries of a batch with the write that queues
its callbacks, after its tasks were enqueued; each worker's consumer loop takes the entries whose
lease ended (tell_take.lua, which pushes the lease forward, so two drains never both re-tell one)
and tells them again. Every told argument carries its `event_id`, so an app drops a repeat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.client import Pipeline

from worker.callbacks.events import EventType, event_id
from worker.scripts import load
from worker.statuses.events import StatusEvent

ENTRIES = "wa:tell:entries"
DUE = "wa:tell:due"
KEYS = [ENTRIES, DUE]


def status_event_id(event: StatusEvent) -> str:
    """A status change's event id: the same however often it is applied."""
    return event_id(EventType.MESSAGE_STATUS, event.wamid, event.status.value)


def entry(kind: EventType, data: dict[str, Any]) -> str:
    """The to-tell entry of an inbound message or a payment: the told dict itself (pure)."""
    return json.dumps({"type": kind.value, "data": data}, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Untold:
    """A to-tell entry taken for a re-tell: its event id and what advance_status or first_seen
    wrote (`type`; `data` for inbound and payments; `event`, `previous`, `noted` for a status)."""

    event_id: str
    entry: dict[str, Any]

    @property
    def kind(self) -> EventType:
        return EventType(self.entry["type"])


class Tells:
    def __init__(self, client: redis.Redis, lease: float) -> None:
        self.redis = client
        self.lease = lease  # longer than an applier takes from recording a batch to telling it
        self._take = load("tell_take").on(client)

    def due(self, now: float) -> float:
        """When an entry written now is re-told if the applier did not tell it."""
        return now + self.lease

    @staticmethod
    def done(pipe: Pipeline, ids: list[str]) -> None:
        """Remove told entries, on a pipeline of the caller's (with the callbacks it queues)."""
        if ids:
            pipe.hdel(ENTRIES, *ids)
            pipe.zrem(DUE, *ids)

    def take(self, now: float, count: int) -> list[Untold]:
        """Entries whose lease ended, leased again to this worker (none taken twice at once)."""
        flat = cast(list[str], self._take(KEYS, [now, self.due(now), count]))
        return [Untold(flat[i], json.loads(flat[i + 1])) for i in range(0, len(flat), 2)]

    def pending(self) -> int:
        return int(self.redis.zcard(DUE))
