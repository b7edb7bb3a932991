"""`callbacks`: the HTTP callbacks (worker.callbacks): checked, and their dead letters listed and
re-driven."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from producers.cli.base import JsonFlag, command_group, emit, fail

if TYPE_CHECKING:
    from worker.callbacks.outbox import Outbox

callbacks_group = command_group("callbacks", "HTTP status callbacks: their configuration and dead letters.")
KeyOption = Annotated[str | None, typer.Option("--key", help="Only this API key name's callbacks.")]


def _outbox(as_json: bool) -> Outbox:
    """The outbox, after the callbacks file was read (a broken one is a clear error, exit 2)."""
    from worker.callbacks.config import CallbacksError
    from worker.services import callback_routes, callbacks, services

    try:
        callbacks()
    except CallbacksError as exc:
        fail({"error": str(exc)}, as_json, 2)
    from worker.web.auth import load_keys

    s = services()
    return callback_routes(s, load_keys(s.settings) if callbacks() else []).outbox


@callbacks_group.command("show")
def callbacks_show(as_json: JsonFlag = False) -> None:
    """Each API key name's callback URL (never its secret), and how many events are on their way.

    Example: wa-dispatch callbacks show
    """
    from worker.services import callbacks

    outbox = _outbox(as_json)
    shown = [{"key": c.key, "url": c.url} for c in callbacks().values()]
    emit({"callbacks": shown, "pending": outbox.pending()}, as_json, "callbacks")


@callbacks_group.command("list")
def callbacks_list(key: KeyOption = None, limit: int = 100, as_json: JsonFlag = False) -> None:
    """Events no callback took within DISPATCH_CALLBACK_MAX_AGE, newest first, with the last error.

    Example: wa-dispatch callbacks list --key shop
    """
    emit(_outbox(as_json).dead(key=key, limit=limit), as_json, "dead callback events")


@callbacks_group.command("redrive")
def callbacks_redrive(
    entries: Annotated[list[str] | None, typer.Argument(help="Entry ids (from `callbacks list`).")] = None,
    key: KeyOption = None,
    as_json: JsonFlag = False,
) -> None:
    """POST dead events again, from now on with a fresh retry window; exit 1 when one was not dead.

    Example: wa-dispatch callbacks redrive --key shop
    """
    outbox = _outbox(as_json)
    chosen = list(entries or []) or [e["entry_id"] for e in outbox.dead(key=key, limit=10**6)]
    if not chosen:
        fail({"error": "nothing to re-drive: name entries or --key, or no event is dead"}, as_json, 1)
    moved = set(outbox.redrive(chosen))
    done = [{"entry_id": e, "redriven": e in moved} for e in chosen]
    emit(done, as_json, "re-driven")
    if len(moved) < len(chosen):
        raise typer.Exit(1)
