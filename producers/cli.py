"""`wa-dispatch`: the operator's command line (typer + rich). Every command takes --json for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker import logging as wa_logging
from worker.errors import DispatchError
from worker.settings import get_settings

app = typer.Typer(help="Send WhatsApp messages through Interakt, and operate the workers that do.",
                  no_args_is_help=True, pretty_exceptions_enable=False)  # fmt: skip
failed_app = typer.Typer(help="Dead letters: intents that ended in failure.", no_args_is_help=True)
app.add_typer(failed_app, name="failed")
console = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.callback()
def _setup() -> None:
    """Logs go to stderr as JSON lines; stdout is for results."""
    wa_logging.configure()


def _emit(data: Any, as_json: bool, table: Table | None = None) -> None:
    if as_json or table is None:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(table)


def _services() -> Any:
    from worker.delivery import services

    return services()


@app.command()
def send(
    intent_file: Annotated[Path, typer.Option("--json-file", "-f", help="A JSON file with send_message's keyword arguments.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the wamid (0: do not wait).")] = 30,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue one intent.

    Example: wa-dispatch send -f intent.json   # {"to": "+919999595313", "type": "text", "text": {"body": "Hi"}}
    """
    from worker.tasks import send_message

    try:
        result = send_message.apply_async(kwargs=json.loads(intent_file.read_text()))
    except DispatchError as exc:
        _emit({"error": str(exc), **exc.info}, True)
        raise typer.Exit(2) from None
    if not wait:
        _emit({"task_id": result.id, "state": result.state}, True)
        return
    status(result.id, wait=wait, as_json=as_json)


@app.command()
def status(
    task_id: str,
    wait: Annotated[float, typer.Option(help="Seconds to wait for a final state.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Show a task's state and its wamid or failure.

    Example: wa-dispatch status 5f0c1e8e-... --wait 30
    """
    from celery.result import AsyncResult

    from worker import app as celery_app

    result = AsyncResult(task_id, app=celery_app)
    try:
        value = result.get(timeout=wait, propagate=False) if wait else result.result
    except Exception:  # noqa: BLE001 - a timeout leaves the state as it is
        value = result.result
    data: dict[str, Any] = {"task_id": task_id, "state": result.state}
    if isinstance(value, DispatchError):
        data.update(error=str(value), **value.info)
    elif isinstance(value, dict):
        data.update(value)
    _emit(data, True)  # a record: always JSON
    if result.state == "FAILURE":
        raise typer.Exit(1)


@app.command()
def pause(
    reason: Annotated[str, typer.Option(help="Why, for the logs and `breaker`.")] = "paused by hand",
    as_json: JsonFlag = False,
) -> None:
    """Stop sending for this phone number id; queued intents wait, none fails. Undo with `resume`."""
    _services().breaker.pause(reason)
    breaker(as_json=as_json)


@app.command()
def resume(as_json: JsonFlag = False) -> None:
    """Resume sending after a pause or an account error."""
    _services().breaker.close()
    breaker(as_json=as_json)


@app.command()
def breaker(as_json: JsonFlag = False) -> None:
    """Show the account circuit breaker of this phone number id (closed = sending)."""
    data = {"phone_number_id": get_settings().phone_number_id, **_services().breaker.status()}
    _emit(data, True)  # a record: always JSON


@failed_app.command("list")
def failed_list(
    code: Annotated[int | None, typer.Option(help="Only this Meta error code.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind: permanent, ambiguous, exhausted, ...")] = None,
    limit: int = 100,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters, newest first.

    Example: wa-dispatch failed list --code 131047
    """
    entries = _services().dead.list(code=code, kind=kind, limit=limit)
    table = Table(title=f"{len(entries)} failed intents")
    for column in ("idempotency key", "kind", "code", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e["idempotency_key"], e["kind"], str(e["code"] or ""), str(e["attempts"]), e["error"] or "")
    _emit(entries, as_json, table)


@failed_app.command("redrive")
def failed_redrive(
    keys: Annotated[list[str] | None, typer.Argument(help="Idempotency keys to re-drive.")] = None,
    code: Annotated[int | None, typer.Option(help="Re-drive every dead letter with this code.")] = None,
    kind: Annotated[str | None, typer.Option(help="Re-drive every dead letter of this kind.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue failed intents again under their own idempotency keys (a key already sent is a no-op).

    Example: wa-dispatch failed redrive --code 131000
    """
    from worker.tasks import send_message

    dead = _services().dead
    chosen = list(keys or []) or [e["idempotency_key"] for e in dead.list(code=code, kind=kind, limit=10**6)]
    if not chosen:
        typer.echo("nothing to re-drive: name keys, --code or --kind", err=True)
        raise typer.Exit(1)
    done = []
    with Progress(TextColumn("re-driving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=as_json) as progress:  # fmt: skip
        task = progress.add_task("redrive", total=len(chosen))
        for key in chosen:
            entry = dead.take(key)
            if entry is not None:
                intent = {**entry["intent"], "idempotency_key": key}
                done.append({"idempotency_key": key, "task_id": send_message.apply_async(kwargs=intent).id})
            progress.advance(task)
    _emit(done, True)


@app.command()
def sandbox(
    port: int = 8089,
    host: str = "127.0.0.1",
    latency: Annotated[float, typer.Option(help="Seconds before each answer.")] = 0.0,
) -> None:
    """Run the local Interakt-compatible sandbox API (sends nothing to WhatsApp)."""
    from worker.sandbox import serve

    serve(host, port, None, latency)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
