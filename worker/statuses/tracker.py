"""Each wamid's delivery status in Redis, moved only forward, and tied back to its intent.

`wa:status:<wamid>` holds the latest status (its rank, time and error). One Lua script
compares ranks and writes, so the same event twice, or a `delivered` after its `read`, changes
nothing, whichever worker applies it. The intent behind a wamid (idempotency key, task id,
campaign run) is the index the send path writes when the API accepts a message
(`worker.delivery.idempotency.WAMID_PREFIX`); a status for a wamid this deployment did not
send is kept all the same, tied to nothing, unless its `biz_opaque_callback_data` names one of
our idempotency keys (the tracker, worker.delivery.callback_data): the worker that sent it died
before it kept the wamid, and the intent (`ambiguous` by then) is tied back as `sent` in the
same step (worker/scripts/parts/tracked.lua). A change the app is to be told of is written to
tell in the same step (worker.statuses.telling), so a worker that dies before telling loses nothing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

import redis

from worker.delivery.callback_data import read_tracker
from worker.delivery.idempotency import DEAD_ENTRIES, DEAD_INDEX, WAMID_PREFIX
from worker.delivery.idempotency import PREFIX as IDEM_PREFIX
from worker.scripts import load
from worker.statuses.events import ERROR_TEXT_MAX, RANK, DeliveryStatus, StatusEvent, tally_field
from worker.statuses.telling import KEYS as TELL_KEYS
from worker.statuses.telling import status_event_id

PREFIX = "wa:status:"
RUN_PREFIX = "wa:run:"  # a campaign run's keys (worker.campaigns.runs.run_prefix)
INBOUND_PREFIX = "wa:inbound:"


class Tie(IntEnum):
    """What a status's tracker did (parts/tracked.lua's tie_back)."""

    NONE = 0
    SENT = 1  # an ambiguous intent became `sent` with this wamid
    NOTED = 2  # its request was still `sending`: the wamid waits for its outcome


@dataclass(frozen=True)
class Applied:
    """What applying one status did: `changed` false for a replay or a status that came late."""

    event: StatusEvent
    changed: bool
    previous: DeliveryStatus | None
    origin: dict[str, str]  # the wamid index: key, task_id, to, type, campaign, run_id, attempts, intent
    priced: bool = False  # its pricing was the wamid's first: count it (statuses repeat it)
    tied: Tie = Tie.NONE  # what the tracker did for a wamid never recorded


def delivery_fields(status: dict[str, str] | None) -> dict[str, Any]:
    """`delivery_status`, `delivery_updated_at` and, for a failure, `delivery_error` (pure). What
    is stored is read as well as it can be and never fails a read: a time that is not a finite
    number is None, an error that is not JSON is kept as its message."""
    if not status:
        return {"delivery_status": DeliveryStatus.ACCEPTED.value, "delivery_updated_at": None}
    fields: dict[str, Any] = {
        "delivery_status": status.get("status"),
        "delivery_updated_at": _finite(status.get("updated_at")),
    }
    if status.get("status") == DeliveryStatus.FAILED:
        fields["delivery_error"] = _error(status.get("error") or "null")
    return fields


def _finite(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _error(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return {"code": None, "title": None, "message": text[:ERROR_TEXT_MAX], "details": None}


class StatusStore:
    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self._advance = load("advance_status").on(client)
        self._first_seen = load("first_seen").on(client)

    def apply(self, events: list[StatusEvent], tell_due: float | None = None) -> list[Applied]:
        """Apply a batch in one round trip; with `tell_due`, each change is also written to tell
        (re-told from then on unless the applier removes it first)."""
        if not events:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for e in events:
            error = json.dumps(e.error) if e.error else ""
            pricing = json.dumps(e.pricing) if e.pricing else ""
            tally = tally_field(e.pricing) if e.pricing else ""
            keys = [PREFIX + e.wamid, WAMID_PREFIX + e.wamid]
            args = [e.status.value, RANK[e.status], e.timestamp, error, self.ttl, pricing, tally, RUN_PREFIX]
            key, _ = read_tracker(e.biz_opaque_callback_data)
            if key is not None:
                keys += [IDEM_PREFIX + key, DEAD_ENTRIES, DEAD_INDEX]
                args += [key, e.wamid, e.recipient_id or "", time.time()]
            if tell_due is not None:
                keys += TELL_KEYS
                args += [status_event_id(e), json.dumps(e.as_dict(), separators=(",", ":")), tell_due]
            self._advance.queue(pipe, keys, args)
        applied = []
        for event, (changed, previous, priced, tied, *index) in zip(events, pipe.execute(), strict=True):
            origin = dict(zip(index[::2], index[1::2], strict=True))
            before = DeliveryStatus(previous) if previous else None
            applied.append(Applied(event, bool(changed), before, origin, bool(priced), Tie(tied)))
        return applied

    def first_seen(
        self, ids: list[str], tell: list[tuple[str, str]] | None = None, tell_due: float = 0.0
    ) -> list[bool]:
        """For inbound messages and payments: True the first time each id (a wamid, an event id)
        is seen (replays are dropped). `tell`, one per id: its event id and to-tell entry
        (worker.statuses.telling.entry), written in the same step when the id is new."""
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for i, ident in enumerate(ids):
            keys: list[str] = [INBOUND_PREFIX + ident]
            args: list[Any] = [self.ttl]
            if tell is not None:
                keys += TELL_KEYS
                args += [*tell[i], tell_due]
            self._first_seen.queue(pipe, keys, args)
        return [bool(ok) for ok in pipe.execute()]

    def lookup(self, wamids: list[str]) -> list[dict[str, Any]]:
        """The delivery fields of each wamid, in order."""
        pipe = self.redis.pipeline(transaction=False)
        for wamid in wamids:
            pipe.hgetall(PREFIX + wamid)
        return [delivery_fields(cast(dict[str, str], s)) for s in pipe.execute()] if wamids else []

    def pricing(self, wamids: list[str]) -> list[dict[str, Any] | None]:
        """Each wamid's pricing as its first priced status carried it, in order (None: none yet)."""
        pipe = self.redis.pipeline(transaction=False)
        for wamid in wamids:
            pipe.hget(PREFIX + wamid, "pricing")
        return [json.loads(p) if p else None for p in pipe.execute()] if wamids else []

    def origin(self, wamid: str) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(WAMID_PREFIX + wamid))

    def origins(self, wamids: list[str]) -> list[dict[str, str]]:
        """Each wamid's index, in order, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for wamid in wamids:
            pipe.hgetall(WAMID_PREFIX + wamid)
        return cast(list[dict[str, str]], pipe.execute()) if wamids else []
