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
campaign_app = typer.Typer(help="Scheduled campaigns: validate, preview, load, run, status, report.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(campaign_app, name="campaign")
optout_app = typer.Typer(help="Numbers that never receive campaign messages.", no_args_is_help=True)
app.add_typer(optout_app, name="optout")
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


def _load(path: Path) -> Any:
    from worker.campaigns import CampaignError, load_campaign

    try:
        return load_campaign(path)
    except CampaignError as exc:
        typer.echo(f"invalid campaign: {exc}", err=True)
        raise typer.Exit(1) from None


@campaign_app.command("validate")
def campaign_validate(files: list[Path], as_json: JsonFlag = False) -> None:
    """Check campaign files: syntax (with line numbers), fields, audience, and the message once filled in.

    Example: wa-dispatch campaign validate campaigns/friday-sale.toml
    """
    summaries = []
    for path in files:
        c = _load(path)
        summaries.append({"file": str(path), "name": c.name, "schedule": c.schedule.model_dump(exclude_none=True, mode="json"),
                          "timezone": c.timezone, "recipients": len(c.rows)})  # fmt: skip
    _emit(summaries, True)


@campaign_app.command("preview")
def campaign_preview(file: Path, limit: int = 5, run_id: str = "preview", as_json: JsonFlag = False) -> None:
    """Show the first intents a run would send, and every row that would be skipped.

    Example: wa-dispatch campaign preview campaigns/friday-sale.toml --limit 3
    """
    from worker.campaigns import BadRow, intent_for

    campaign = _load(file)
    intents, bad = [], []
    for number, row in enumerate(campaign.rows, start=1):
        try:
            intents.append(intent_for(campaign, row, run_id))
        except BadRow as exc:
            bad.append({"row": number, "reason": str(exc)})
    _emit({"recipients": len(campaign.rows), "sendable": len(intents), "intents": intents[:limit], "bad_rows": bad}, True)


@campaign_app.command("load")
def campaign_load(paths: list[Path], as_json: JsonFlag = False) -> None:
    """Load (or reload) campaign files or directories into beat's schedule; no restart needed.

    Example: wa-dispatch campaign load campaigns/
    """
    from worker import app as celery_app
    from worker.campaigns import CampaignError
    from worker.scheduling import load_paths

    try:
        loaded = load_paths(celery_app, paths)
    except CampaignError as exc:
        typer.echo(f"invalid campaign: {exc}", err=True)
        raise typer.Exit(1) from None
    _emit([{"name": c.name, "recipients": len(c.rows)} for c in loaded], True)


@campaign_app.command("remove")
def campaign_remove(name: str) -> None:
    """Unschedule a campaign and forget its definition (run reports stay)."""
    from worker import app as celery_app
    from worker.scheduling import remove

    remove(celery_app, name)


@campaign_app.command("run")
def campaign_run(
    name_or_file: Annotated[str, typer.Argument(help="A loaded campaign's name, or a file to load and run.")],
    run_id: Annotated[str | None, typer.Option(help="Run id; the same id never messages anybody twice.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run with a progress bar until it is done.")] = True,
    timeout: float = 3600,
    as_json: JsonFlag = False,
) -> None:
    """Run a campaign now, outside its schedule.

    Example: wa-dispatch campaign run campaigns/friday-sale.toml --run-id manual-1
    """
    from worker import app as celery_app
    from worker.scheduling import save
    from worker.tasks import run_campaign

    name = name_or_file
    if name_or_file.endswith(".toml") or Path(name_or_file).is_file():
        campaign = _load(Path(name_or_file))
        save(celery_app, campaign)
        name = campaign.name
    started = run_campaign.apply_async(kwargs={"name": name, "run_id": run_id}).get(timeout=60)
    if wait:
        _follow(name, started["run_id"], timeout, quiet=as_json)
    _emit(_services().runs.counts(name, started["run_id"]) | {"chunks": started["chunks"]}, True)
    if _services().runs.counts(name, started["run_id"])["failed"]:
        raise typer.Exit(1)


def _follow(name: str, run_id: str, timeout: float, quiet: bool) -> None:
    import time

    runs = _services().runs
    columns = [TextColumn(f"{name} {run_id}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
               TimeElapsedColumn()]  # fmt: skip
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as progress:
        bar = progress.add_task("run", total=None, detail="")
        started = time.monotonic()
        while time.monotonic() < deadline:
            c = runs.counts(name, run_id)
            rate = c["sent"] / max(time.monotonic() - started, 1e-3)
            progress.update(bar, total=c["total"] or None, completed=c["sent"] + c["failed"] + c["skipped"],
                            detail=f"sent {c['sent']}  failed {c['failed']}  skipped {c['skipped']}  {rate:.0f}/s")  # fmt: skip
            if c["done"]:
                return
            time.sleep(0.5)


@campaign_app.command("status")
def campaign_status(name: str, run_id: Annotated[str | None, typer.Argument()] = None, as_json: JsonFlag = False) -> None:
    """Counters of a run (the latest when no run id is given): queued, sent, failed by code, skipped.

    Example: wa-dispatch campaign status friday-sale
    """
    runs = _services().runs
    run_id = run_id or next(iter(runs.runs(name)), None)
    if run_id is None:
        typer.echo(f"no runs of {name!r}", err=True)
        raise typer.Exit(1)
    _emit(runs.counts(name, run_id), True)


@campaign_app.command("report")
def campaign_report(
    name: str,
    run_id: Annotated[str | None, typer.Argument()] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the report as CSV to this file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Each recipient of a run with its wamid or failure, or why it was skipped.

    Example: wa-dispatch campaign report friday-sale --csv report.csv
    """
    import csv

    runs = _services().runs
    run_id = run_id or next(iter(runs.runs(name)), None)
    if run_id is None:
        typer.echo(f"no runs of {name!r}", err=True)
        raise typer.Exit(1)
    rows = runs.report(name, run_id)
    if csv_file:
        with csv_file.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["to", "status", "wamid", "error_code", "error", "reason", "task_id"])
            writer.writeheader()
            writer.writerows(rows)
    table = Table(title=f"{name} run {run_id}: {len(rows)} recipients")
    for column in ("to", "status", "wamid or error", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["to"], r["status"], r["wamid"] or (f"({r['error_code']}) {r['error']}" if r["error"] else ""),
                      r["reason"] or "")  # fmt: skip
    _emit({"campaign": name, "run_id": run_id, "recipients": rows}, as_json, table)


@optout_app.command("add")
def optout_add(numbers: list[str]) -> None:
    """Never send campaign messages to these numbers.  Example: wa-dispatch optout add +919999595313"""
    from worker.intents import normalize_phone

    typer.echo(json.dumps({"added": _services().runs.opt_out(*[normalize_phone(n) for n in numbers])}))


@optout_app.command("remove")
def optout_remove(numbers: list[str]) -> None:
    """Let these numbers receive campaign messages again."""
    from worker.intents import normalize_phone

    typer.echo(json.dumps({"removed": _services().runs.opt_in(*[normalize_phone(n) for n in numbers])}))


@optout_app.command("list")
def optout_list() -> None:
    """Every opted-out number."""
    typer.echo(json.dumps(_services().runs.opt_outs()))


@app.command()
def health(
    check: Annotated[list[str] | None, typer.Option(help="Only these: redis, credentials, workers, api, breaker.")] = None,
) -> None:
    """Check Redis, credentials, workers and the API host without sending anything; exit 1 if any fails.

    Example (a Kubernetes readiness probe): wa-dispatch health --check redis --check credentials
    """
    from worker import health as checks

    results = checks.run(get_settings(), check or list(checks.CHECKS))
    _emit(results, True)
    if not all(r["ok"] for r in results.values()):
        raise typer.Exit(1)


@app.command()
def flower(
    port: int = 5555,
    address: str = "0.0.0.0",
) -> None:
    """Run Flower, the retry and failure dashboard, with its state kept in FLOWER_DB across restarts.

    Basic auth comes from FLOWER_BASIC_AUTH=user:password (read by Flower from the environment, so it
    never shows in `ps`); it is required unless INTERAKT_API_URL points at a local sandbox.
    Example: FLOWER_BASIC_AUTH=ops:s3cret wa-dispatch flower --port 5555
    """
    import os
    import shutil
    import sys
    from urllib.parse import urlparse

    local = urlparse(get_settings().api_url).hostname in ("127.0.0.1", "localhost", "::1")
    if not os.environ.get("FLOWER_BASIC_AUTH") and not local:
        typer.echo("refusing to start Flower without FLOWER_BASIC_AUTH=user:password outside the sandbox", err=True)
        raise typer.Exit(2)
    db = os.environ.get("FLOWER_DB", "flower.db")
    beside = Path(sys.executable).parent / "celery"  # the celery of this environment, PATH or not
    celery = str(beside) if beside.exists() else shutil.which("celery") or "celery"
    os.execv(celery, [celery, "-A", "worker", "flower", f"--port={port}", f"--address={address}",
                      "--persistent=True", f"--db={db}", "--state_save_interval=10000"])  # fmt: skip


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
