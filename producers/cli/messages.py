"""`send` and `status`: one intent in, and what became of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from producers.cli.base import JsonFlag, SenderOption, app, emit, fail
from worker.delivery.errors import DispatchError


@app.command()
def send(
    intent_file: Annotated[
        Path, typer.Option("--json-file", "-f", help="A JSON file with send_message's keyword arguments.")
    ],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the wamid (0: do not wait).")] = 30,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue one intent.

    Example: wa-dispatch send -f intent.json --sender support
    (intent.json: {"to": "+919999595313", "type": "text", "text": {"body": "Hi"}})
    """
    from worker.tasks import send_message

    intent = json.loads(intent_file.read_text())
    if sender:
        intent["sender"] = sender
    try:
        result = send_message.apply_async(kwargs=intent)
    except DispatchError as exc:
        fail({"error": str(exc), **exc.info}, as_json, 2)
    if not wait:
        emit({"task_id": result.id, "state": result.state}, as_json, "enqueued")
        return
    status(result.id, wait=wait, as_json=as_json)


@app.command()
def status(
    task_id: Annotated[str | None, typer.Argument(help="The task id (or give --wamid).")] = None,
    wamid: Annotated[str | None, typer.Option(help="Look the message up by its wamid instead.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a final state.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Show a task's state, its wamid or failure, and the message's delivery status (accepted,
    sent, delivered, read or failed, with the error); exit 1 when it failed.

    Example: wa-dispatch status 5f0c1e8e-... --wait 30    or    wa-dispatch status --wamid wamid.HBgM...
    """
    from producers import delivery_status

    if not task_id and not wamid:
        fail({"error": "give a task id or --wamid"}, as_json, 2)
    data = delivery_status(task_id, wamid=wamid, wait=wait)
    if data["state"] is None and wamid and data["delivery_status"] == "accepted":
        fail({"error": f"unknown wamid {wamid}", "wamid": wamid}, as_json, 1)
    emit(data, as_json, f"task {data['task_id']}" if data["task_id"] else f"wamid {wamid}")
    if data["state"] == "FAILURE" or data["delivery_status"] == "failed":
        raise typer.Exit(1)
