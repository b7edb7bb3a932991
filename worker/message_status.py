"""A message's status as a reader sees it: its task's state and outcome (the result backend) and
its wamid's delivery status (`StatusStore`). Reading needs the state Redis only: no sender, no
token, so an app that sets DISPATCH_SENDERS, or the web process, reads without any of them.
`producers.delivery_status`, `wa-dispatch status` and GET /v1/messages/{task_id} are this. It
sits above `worker.services`, which builds the statuses (and the statuses package below it).
"""

from __future__ import annotations

import math
from typing import Any

from celery.result import AsyncResult

from worker.app import app
from worker.delivery.errors import DispatchError
from worker.services import ledger, status_store


def delivery_status(
    task_id: str | None = None, *, wamid: str | None = None, wait: float = 0
) -> dict[str, Any]:
    """A task's state and outcome with its message's delivery status (what `wa-dispatch status`
    prints), as strict JSON: `delivery_status` (accepted, sent, delivered, read, failed),
    `delivery_updated_at`, and `delivery_error` (code, title, message, details) for a failure.
    Give the task id, or the wamid (its task is found through the wamid index). `wait`: seconds
    to wait for the task."""
    statuses = status_store()
    origin = statuses.origin(wamid) if wamid else {}
    task_id = task_id or origin.get("task_id")
    data: dict[str, Any] = {"task_id": task_id, "state": None}
    if task_id:
        result = AsyncResult(task_id, app=app)
        try:
            value = result.get(timeout=wait, propagate=False) if wait else result.result
        except Exception:  # noqa: BLE001 - a timeout leaves the state as it is
            value = result.result
        data["state"] = result.state
        if isinstance(value, DispatchError):
            data.update(error=str(value), **value.info)
        elif isinstance(value, dict):
            data.update(value)
    wamid = wamid or data.get("wamid")
    if wamid:
        data["wamid"] = wamid
        data.update(statuses.lookup([wamid])[0])
    else:
        data["delivery_status"] = None
    return jsonable(data)


def intent_sender(task_id: str, data: dict[str, Any]) -> str | None:
    """The sender the task's intent names, from what the deployment keeps of it: its ledger entry
    while it is in flight, the wamid index once it is sent (`data`: its delivery_status); None
    when neither says (the sender `default`)."""
    book = ledger()
    entry = book.entry(task_id) if book is not None else None
    if entry is not None:
        return entry.kwargs.get("sender")
    wamid = data.get("wamid")
    return status_store().origin(wamid).get("sender") if isinstance(wamid, str) else None


def jsonable(value: Any) -> Any:
    """`value` as strict JSON can hold it, whatever was stored: a float that is not finite is
    None (json.dumps would write NaN, which no JSON parser reads, and Starlette refuses it),
    anything not JSON is its text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)
