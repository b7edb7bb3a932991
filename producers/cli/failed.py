"""`failed`: dead letters, listed and re-driven."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producers.cli.base import JsonFlag, SenderOption, command_group, emit, fail, services

failed_group = command_group("failed", "Dead letters: intents that ended in failure.")


@failed_group.command("list")
def failed_list(
    code: Annotated[int | None, typer.Option(help="Only this Meta error code.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind: permanent, ambiguous, exhausted, ...")
    ] = None,
    limit: int = 100,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters, newest first.

    Example: wa-dispatch failed list --code 131047
    """
    entries = services().send.dead.list(code=code, kind=kind, sender=sender, limit=limit)
    table = Table(title=f"{len(entries)} failed intents", title_justify="left")
    for column in ("idempotency key", "kind", "code", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            e["idempotency_key"], e["kind"], str(e["code"] or ""), str(e["attempts"]), e["error"] or ""
        )
    emit(entries, as_json, "failed intents", table)


@failed_group.command("redrive")
def failed_redrive(
    keys: Annotated[list[str] | None, typer.Argument(help="Idempotency keys to re-drive.")] = None,
    code: Annotated[int | None, typer.Option(help="Re-drive every dead letter with this code.")] = None,
    kind: Annotated[str | None, typer.Option(help="Re-drive every dead letter of this kind.")] = None,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue failed intents again under their own idempotency keys (a key already sent is a no-op).

    A dead letter is removed only once its intent is enqueued; exit 1 when any was not.
    Example: wa-dispatch failed redrive --code 131000
    """
    from worker.tasks import send_message

    dead = services().send.dead
    listed = dead.list(code=code, kind=kind, sender=sender, limit=10**6)
    chosen = list(keys or []) or [e["idempotency_key"] for e in listed]
    if not chosen:
        fail({"error": "nothing to re-drive: name keys, --code, --kind or --sender"}, as_json, 1)
    done: list[dict[str, Any]] = []
    columns = (TextColumn("re-driving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), disable=as_json) as progress:
        bar = progress.add_task("redrive", total=len(chosen))
        for redriven in dead.redrive(chosen, lambda intent: send_message.apply_async(kwargs=intent).id):
            done.append(asdict(redriven))
            progress.advance(bar)
    emit(done, as_json, "re-driven")
    if any(d["error"] for d in done):
        raise typer.Exit(1)
