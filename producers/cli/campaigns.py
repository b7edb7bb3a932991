"""`campaign` and `optout`: campaign files checked, loaded, run and reported; numbers that never
receive campaign messages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from producers.cli.base import JsonFlag, command_group, console, emit, fail, services
from worker.delivery.errors import DispatchError
from worker.settings import get_settings

if TYPE_CHECKING:
    from worker.campaigns.spec import Campaign

campaign_group = command_group(
    "campaign", "Scheduled campaigns: validate, preview, load, run, status, report."
)
optout_group = command_group(
    "optout", "Numbers opted out of marketing messages: campaigns and marketing templates skip them."
)


def _load(path: Path, as_json: bool) -> Campaign:
    """A campaign file, its message also checked against the template registry when one is synced;
    refused (exit 1) with the reason, as one JSON document with --json."""
    import redis

    from worker.campaigns.spec import CampaignError, load_campaign, sample_intent
    from worker.delivery.errors import InvalidIntent
    from worker.delivery.templates import TemplateRegistry
    from worker.redis_conn import connect

    settings = get_settings()
    # Fail fast: a file is checked without Redis too, only not against the registry.
    client = connect(settings.state_redis_url, settings, decode_responses=True, socket_connect_timeout=2)
    try:
        campaign = load_campaign(path)
        if campaign.sender in (None, "default"):  # another sender's account is checked at run start
            TemplateRegistry(client, settings.waba_id).check(sample_intent(campaign))
    except redis.RedisError as exc:
        typer.echo(f"templates not checked: the registry's Redis did not answer ({exc})", err=True)
    except CampaignError as exc:
        fail({"error": f"invalid campaign: {exc}", "file": str(path)}, as_json, 1)
    except InvalidIntent as exc:
        message = exc.message.removeprefix("invalid message intent: ")
        fail({"error": f"invalid campaign: {path}: message: {message}", "file": str(path)}, as_json, 1)
    return campaign


@campaign_group.command("validate")
def campaign_validate(files: list[Path], as_json: JsonFlag = False) -> None:
    """Check campaign files: syntax (with line numbers), fields, audience, and the message once filled in.

    Example: wa-dispatch campaign validate campaigns/friday-sale.toml
    """
    summaries = []
    for path in files:
        c = _load(path, as_json)
        summaries.append(
            {
                "file": str(path),
                "name": c.name,
                "schedule": c.schedule.model_dump(exclude_none=True, mode="json"),
                "timezone": c.timezone,
                "recipients": len(c.rows),
            }
        )
    emit(summaries, as_json, "valid campaigns")


@campaign_group.command("preview")
def campaign_preview(file: Path, limit: int = 5, run_id: str = "preview", as_json: JsonFlag = False) -> None:
    """Show the first intents a run would send, and every row that would be skipped.

    Example: wa-dispatch campaign preview campaigns/friday-sale.toml --limit 3
    """
    from worker.campaigns.spec import BadRow, intent_for

    campaign = _load(file, as_json)
    intents, bad = [], []
    for number, row in enumerate(campaign.rows, start=1):
        try:
            intents.append(intent_for(campaign, row, run_id))
        except BadRow as exc:
            bad.append({"row": number, "reason": str(exc)})
    data = {
        "recipients": len(campaign.rows),
        "sendable": len(intents),
        "intents": intents[:limit],
        "bad_rows": bad,
    }
    if as_json:
        emit(data, as_json, "preview")
        return
    console.print(f"{campaign.name}: {len(intents)} of {len(campaign.rows)} recipients sendable")
    emit([{"to": i["to"], "intent": i} for i in intents[:limit]], False, f"first {limit} intents")
    emit(bad, False, "skipped rows")


@campaign_group.command("load")
def campaign_load(paths: list[Path], as_json: JsonFlag = False) -> None:
    """Load (or reload) campaign files or directories into beat's schedule; no restart needed.

    Example: wa-dispatch campaign load campaigns/
    """
    from worker import app as celery_app
    from worker.campaigns.schedule import load_paths
    from worker.campaigns.spec import CampaignError

    try:
        loaded = load_paths(celery_app, paths)
    except CampaignError as exc:
        fail({"error": f"invalid campaign: {exc}"}, as_json, 1)
    emit([{"name": c.name, "recipients": len(c.rows)} for c in loaded], as_json, "loaded campaigns")


@campaign_group.command("remove")
def campaign_remove(name: str, as_json: JsonFlag = False) -> None:
    """Unschedule a campaign and forget its definition (run reports stay)."""
    from worker import app as celery_app
    from worker.campaigns.schedule import remove

    remove(celery_app, name)
    emit({"removed": name}, as_json, "campaign removed")


@campaign_group.command("run")
def campaign_run(
    name_or_file: Annotated[str, typer.Argument(help="A loaded campaign's name, or a file to load and run.")],
    run_id: Annotated[
        str | None, typer.Option(help="Run id; the same id never messages anybody twice.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the run with a progress bar until it is done.")] = True,
    timeout: float = 3600,
    as_json: JsonFlag = False,
) -> None:
    """Run a campaign now, outside its schedule; exit 1 when any recipient failed.

    Example: wa-dispatch campaign run campaigns/friday-sale.toml --run-id manual-1
    """
    from worker import app as celery_app
    from worker.campaigns.schedule import save
    from worker.tasks import run_campaign

    name = name_or_file
    if name_or_file.endswith(".toml") or Path(name_or_file).is_file():
        campaign = _load(Path(name_or_file), as_json)
        save(celery_app, campaign)
        name = campaign.name
    try:
        started = run_campaign.apply_async(kwargs={"name": name, "run_id": run_id}).get(timeout=60)
    except DispatchError as exc:  # refused before any send (a template that does not fit the registry)
        fail({"error": f"campaign {name} refused: {exc}", **exc.info}, as_json, 1)
    if wait:
        _follow(name, started["run_id"], timeout, quiet=as_json)
    counts = services().runs.counts(name, started["run_id"])
    emit(counts | {"chunks": started["chunks"]}, as_json, f"{name} run {started['run_id']}")
    if counts["failed"] or counts["ambiguous"]:
        raise typer.Exit(1)


def _follow(name: str, run_id: str, timeout: float, quiet: bool) -> None:
    import time

    runs = services().runs
    columns = [
        TextColumn(f"{name} {run_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as progress:
        bar = progress.add_task("run", total=None, detail="")
        started = time.monotonic()
        while time.monotonic() < deadline:
            c = runs.counts(name, run_id)
            rate = c["sent"] / max(time.monotonic() - started, 1e-3)
            progress.update(
                bar,
                total=c["total"] or None,
                completed=c["sent"] + c["failed"] + c["ambiguous"] + c["skipped"],
                detail=f"sent {c['sent']}  failed {c['failed']}  ambiguous {c['ambiguous']}  "
                f"skipped {c['skipped']}  {rate:.0f}/s",
            )
            if c["done"]:
                return
            time.sleep(0.5)


def _run_id(name: str, run_id: str | None, as_json: bool) -> str:
    """The given run, or the latest one of the campaign."""
    run_id = run_id or next(iter(services().runs.runs(name)), None)
    if run_id is None:
        fail({"error": f"no runs of {name!r}"}, as_json, 1)
    return run_id


@campaign_group.command("status")
def campaign_status(
    name: str, run_id: Annotated[str | None, typer.Argument()] = None, as_json: JsonFlag = False
) -> None:
    """Counters of a run (the latest when no run id is given): queued, sent, failed by code, skipped,
    and from the status webhooks delivered, read, undelivered by code, and billable and free
    messages by category (marketing, utility, authentication, service), each message once.

    Example: wa-dispatch campaign status friday-sale
    """
    run_id = _run_id(name, run_id, as_json)
    runs = services().runs
    emit({**runs.counts(name, run_id), **runs.delivery(name, run_id)}, as_json, f"{name} run {run_id}")


REPORT_COLUMNS = [
    "to",
    "status",
    "wamid",
    "error_code",
    "error",
    "reason",
    "task_id",
    "delivery_status",
    "delivery_error_code",
    "pricing_category",
    "billable",
]


@campaign_group.command("report")
def campaign_report(
    name: str,
    run_id: Annotated[str | None, typer.Argument()] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write the report as CSV to this file.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Each recipient of a run with its wamid or failure, or why it was skipped.

    With --csv the rows go to the file and only a summary is printed.
    Example: wa-dispatch campaign report friday-sale --csv report.csv
    """
    import csv

    run_id = _run_id(name, run_id, as_json)
    rows = services().runs.report(name, run_id)
    if csv_file:
        with csv_file.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        summary = {"campaign": name, "run_id": run_id, "recipients": len(rows), "csv": str(csv_file)}
        if as_json:
            emit(summary, as_json, "report")
        else:
            console.print(f"{name} run {run_id}: {len(rows)} recipients written to {csv_file}")
        return
    table = Table(title=f"{name} run {run_id}: {len(rows)} recipients", title_justify="left")
    for column in ("to", "status", "wamid or error", "reason", "delivery", "billed as"):
        table.add_column(column, overflow="fold")
    for r in rows:
        delivery = r["delivery_status"] or ""
        billed = (
            f"{r['pricing_category']} ({'billable' if r['billable'] else 'free'})"
            if r["pricing_category"]
            else ""
        )
        table.add_row(
            r["to"],
            r["status"],
            r["wamid"] or (f"({r['error_code']}) {r['error']}" if r["error"] else ""),
            r["reason"] or "",
            f"{delivery} ({r['delivery_error_code']})" if r["delivery_error_code"] else delivery,
            billed,
        )
    emit({"campaign": name, "run_id": run_id, "recipients": rows}, as_json, "report", table)


@optout_group.command("add")
def optout_add(numbers: list[str], as_json: JsonFlag = False) -> None:
    """Opt these numbers out of marketing messages (campaigns, marketing templates), as the operator.

    Example: wa-dispatch optout add +919999595313
    """
    from worker.delivery.optouts import Reason

    optouts = services().send.optouts
    added = sum(
        optouts.record(n, Reason.OPERATOR, detail="wa-dispatch optout add") for n in _phones(numbers, as_json)
    )
    emit({"added": added}, as_json, "opted out")


@optout_group.command("remove")
def optout_remove(numbers: list[str], as_json: JsonFlag = False) -> None:
    """Let these numbers receive marketing messages again, whatever opted them out."""
    optouts = services().send.optouts
    removed = sum(optouts.remove(n) for n in _phones(numbers, as_json))
    emit({"removed": removed}, as_json, "opted in again")


@optout_group.command("list")
def optout_list(as_json: JsonFlag = False) -> None:
    """Every opted-out number, with why (keyword, user_preferences, meta_131050, operator) and when.

    A number erased with `wa-dispatch forget` is listed as its salted hash (`erased:...`).
    """
    import time

    rows = services().send.optouts.listing()
    table = Table(title=f"{len(rows)} opted-out numbers", title_justify="left")
    for column in ("number", "reason", "since", "detail"):
        table.add_column(column, overflow="fold")
    for r in rows:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["at"])) if r["at"] else ""
        table.add_row(r["number"], r["reason"], since, r["detail"])
    emit(rows, as_json, "opted-out numbers", table)


def _phones(numbers: list[str], as_json: bool) -> list[str]:
    from worker.delivery.intents import normalize_phone

    try:
        return [normalize_phone(n) for n in numbers]
    except ValueError as exc:
        fail({"error": str(exc)}, as_json, 2)
