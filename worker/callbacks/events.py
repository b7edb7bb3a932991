"""What an app is told, over HTTP or as a Celery task: events with ids that name the change (pure).

An event's id is derived from what changed (a wamid and its new status, an inbound wamid), so the
same change applied twice, by a worker that died between recording and telling, is the same
event: the app drops a repeat by its id.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    MESSAGE_STATUS = "message.status"
    MESSAGE_INBOUND = "message.inbound"
    PAYMENT_STATUS = "payment.status"


def event_id(kind: EventType, *parts: str) -> str:
    return "evt_" + hashlib.sha256(":".join((kind.value, *parts)).encode()).hexdigest()[:32]


def event(kind: EventType, ident: str, data: dict[str, Any], created: float) -> dict[str, Any]:
    """The JSON a callback POSTs: `{"id", "type", "created", "data"}`."""
    return {"id": ident, "type": kind.value, "created": int(created), "data": data}
