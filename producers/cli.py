"""`wa-dispatch`: the operator's command line (typer + rich).

Each command prints for a person (tables on stdout, progress on stderr); with `--json` it prints one
JSON document on stdout instead, and nothing else there. Logs go to stderr, warnings and above
unless DISPATCH_LOG_LEVEL says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.delivery.errors import DispatchError
from worker.ops import logs
from worker.settings import get_settings

if TYPE_CHECKING:
    from worker.campaigns.spec import Campaign
    from worker.delivery.send import SenderServices
    from worker.services import Services

app = typer.Typer(
    help="Send WhatsApp messages through Interakt, and operate the workers that do.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _group(name: str, help: str) -> typer.Typer:
    """A command group (`wa-dispatch NAME ...`) that prints its help when given no command."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


failed_app = _group("failed", "Dead letters: intents that ended in failure.")
campaign_app = _group("campaign", "Scheduled campaigns: validate, preview, load, run, status, report.")
optout_app = _group("optout", "Numbers that never receive campaign messages.")
senders_app = _group("senders", "The numbers this deployment sends from.")
templates_app = _group("templates", "The template registry: sync the WABA's templates, list them, show one.")
media_app = _group("media", "Media of the sending number: upload, show, delete.")
api_key_app = _group("api-key", "Keys of the HTTP API (DISPATCH_API_KEYS).")
console = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
SenderOption = Annotated[
    str | None, typer.Option("--sender", help="A sender of DISPATCH_SENDERS (else `default`).")
]


@app.callback()
def _setup() -> None:
    """Logs go to stderr as JSON lines; stdout is for results."""
    settings = get_settings()
    logs.configure(settings.log_level if "log_level" in settings.model_fields_set else "WARNING")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _table(data: Any, title: str) -> Table:
    """A dict as field/value rows, a list of dicts as one row each."""
    table = Table(title=title, title_justify="left")
    if isinstance(data, dict):
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for key, value in data.items():
            table.add_row(str(key), _cell(value))
        return table
    rows = [row if isinstance(row, dict) else {"value": row} for row in data]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _emit(data: Any, as_json: bool, title: str, table: Table | None = None) -> None:
    """One JSON document with --json; otherwise `table` (or `data` laid out as one) for a person."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif isinstance(data, list) and not data:
        console.print(f"{title}: none")
    else:
        console.print(table or _table(data, title))


def _fail(error: dict[str, Any], as_json: bool, code: int) -> NoReturn:
    """An error: JSON on stdout with --json, a line on stderr otherwise; exit `code`."""
    if as_json:
        typer.echo(json.dumps(error, indent=2, default=str))
    else:
        typer.echo(f"error: {error.get('error')}", err=True)
    raise typer.Exit(code)


def _services() -> Services:
    from worker.services import services

    return services()


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
        _fail({"error": str(exc), **exc.info}, as_json, 2)
    if not wait:
        _emit({"task_id": result.id, "state": result.state}, as_json, "enqueued")
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
        _fail({"error": "give a task id or --wamid"}, as_json, 2)
    data = delivery_status(task_id, wamid=wamid, wait=wait)
    if data["state"] is None and wamid and data["delivery_status"] == "accepted":
        _fail({"error": f"unknown wamid {wamid}", "wamid": wamid}, as_json, 1)
    _emit(data, as_json, f"task {data['task_id']}" if data["task_id"] else f"wamid {wamid}")
    if data["state"] == "FAILURE" or data["delivery_status"] == "failed":
        raise typer.Exit(1)


def _number(sender: str | None, as_json: bool) -> SenderServices:
    """A sender's own services, or a clear error naming the known senders."""
    try:
        return _services().send.sender(sender)
    except DispatchError as exc:
        _fail({"error": str(exc), **exc.info}, as_json, 2)


@app.command()
def pause(
    reason: Annotated[str, typer.Option(help="Why, for the logs and `breaker`.")] = "paused by hand",
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Stop sending for a sender's number; queued intents wait, none fails. Undo with `resume`."""
    _number(sender, as_json).breaker.pause(reason)
    breaker(sender=sender, as_json=as_json)


@app.command()
def resume(sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """Resume sending after a pause or an account error."""
    _number(sender, as_json).breaker.close()
    breaker(sender=sender, as_json=as_json)


@app.command()
def breaker(sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """Show the account circuit breaker of a sender's number (closed = sending)."""
    number = _number(sender, as_json)
    data = {
        "sender": number.name,
        "phone_number_id": number.settings.phone_number_id,
        **number.breaker.status(),
    }
    _emit(data, as_json, "account circuit breaker")


@failed_app.command("list")
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
    entries = _services().send.dead.list(code=code, kind=kind, sender=sender, limit=limit)
    table = Table(title=f"{len(entries)} failed intents", title_justify="left")
    for column in ("idempotency key", "kind", "code", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            e["idempotency_key"], e["kind"], str(e["code"] or ""), str(e["attempts"]), e["error"] or ""
        )
    _emit(entries, as_json, "failed intents", table)


@failed_app.command("redrive")
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

    dead = _services().send.dead
    listed = dead.list(code=code, kind=kind, sender=sender, limit=10**6)
    chosen = list(keys or []) or [e["idempotency_key"] for e in listed]
    if not chosen:
        _fail({"error": "nothing to re-drive: name keys, --code, --kind or --sender"}, as_json, 1)
    done: list[dict[str, Any]] = []
    with Progress(
        TextColumn("re-driving"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=as_json,
    ) as progress:
        task = progress.add_task("redrive", total=len(chosen))
        for key in chosen:
            entry = dead.reopen(key)
            if entry is None:
                done.append(
                    {"idempotency_key": key, "task_id": None, "error": "no dead letter with this key"}
                )
            else:
                try:
                    result = send_message.apply_async(kwargs={**entry["intent"], "idempotency_key": key})
                except DispatchError as exc:
                    dead.restore(key)
                    done.append({"idempotency_key": key, "task_id": None, "error": str(exc)})
                else:
                    dead.remove(key)
                    done.append({"idempotency_key": key, "task_id": result.id, "error": None})
            progress.advance(task)
    _emit(done, as_json, "re-driven")
    if any(d["error"] for d in done):
        raise typer.Exit(1)


def _load(path: Path) -> Campaign:
    """A campaign file, its message also checked against the template registry when one is synced."""
    import redis

    from worker.campaigns.spec import CampaignError, load_campaign, sample_intent
    from worker.delivery.errors import InvalidIntent
    from worker.delivery.templates import TemplateRegistry

    settings = get_settings()
    # Fail fast: a file is checked without Redis too, only not against the registry.
    client = redis.Redis.from_url(settings.state_redis_url, decode_responses=True, socket_connect_timeout=2)
    try:
        campaign = load_campaign(path)
        if campaign.sender in (None, "default"):  # another sender's account is checked at run start
            TemplateRegistry(client, settings.waba_id).check(sample_intent(campaign))
    except redis.RedisError as exc:
        typer.echo(f"templates not checked: the registry's Redis did not answer ({exc})", err=True)
    except CampaignError as exc:
        typer.echo(f"invalid campaign: {exc}", err=True)
        raise typer.Exit(1) from None
    except InvalidIntent as exc:
        typer.echo(
            f"invalid campaign: {path}: message: {exc.message.removeprefix('invalid message intent: ')}",
            err=True,
        )
        raise typer.Exit(1) from None
    return campaign


@campaign_app.command("validate")
def campaign_validate(files: list[Path], as_json: JsonFlag = False) -> None:
    """Check campaign files: syntax (with line numbers), fields, audience, and the message once filled in.

    Example: wa-dispatch campaign validate campaigns/friday-sale.toml
    """
    summaries = []
    for path in files:
        c = _load(path)
        summaries.append(
            {
                "file": str(path),
                "name": c.name,
                "schedule": c.schedule.model_dump(exclude_none=True, mode="json"),
                "timezone": c.timezone,
                "recipients": len(c.rows),
            }
        )
    _emit(summaries, as_json, "valid campaigns")


@campaign_app.command("preview")
def campaign_preview(file: Path, limit: int = 5, run_id: str = "preview", as_json: JsonFlag = False) -> None:
    """Show the first intents a run would send, and every row that would be skipped.

    Example: wa-dispatch campaign preview campaigns/friday-sale.toml --limit 3
    """
    from worker.campaigns.spec import BadRow, intent_for

    campaign = _load(file)
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
        _emit(data, as_json, "preview")
        return
    console.print(f"{campaign.name}: {len(intents)} of {len(campaign.rows)} recipients sendable")
    _emit([{"to": i["to"], "intent": i} for i in intents[:limit]], False, f"first {limit} intents")
    _emit(bad, False, "skipped rows")


@campaign_app.command("load")
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
        typer.echo(f"invalid campaign: {exc}", err=True)
        raise typer.Exit(1) from None
    _emit([{"name": c.name, "recipients": len(c.rows)} for c in loaded], as_json, "loaded campaigns")


@campaign_app.command("remove")
def campaign_remove(name: str, as_json: JsonFlag = False) -> None:
    """Unschedule a campaign and forget its definition (run reports stay)."""
    from worker import app as celery_app
    from worker.campaigns.schedule import remove

    remove(celery_app, name)
    _emit({"removed": name}, as_json, "campaign removed")


@campaign_app.command("run")
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
        campaign = _load(Path(name_or_file))
        save(celery_app, campaign)
        name = campaign.name
    try:
        started = run_campaign.apply_async(kwargs={"name": name, "run_id": run_id}).get(timeout=60)
    except DispatchError as exc:  # refused before any send (a template that does not fit the registry)
        _fail({"error": f"campaign {name} refused: {exc}", **exc.info}, as_json, 1)
    if wait:
        _follow(name, started["run_id"], timeout, quiet=as_json)
    counts = _services().runs.counts(name, started["run_id"])
    _emit(counts | {"chunks": started["chunks"]}, as_json, f"{name} run {started['run_id']}")
    if counts["failed"]:
        raise typer.Exit(1)


def _follow(name: str, run_id: str, timeout: float, quiet: bool) -> None:
    import time

    runs = _services().runs
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
                completed=c["sent"] + c["failed"] + c["skipped"],
                detail=f"sent {c['sent']}  failed {c['failed']}  skipped {c['skipped']}  {rate:.0f}/s",
            )
            if c["done"]:
                return
            time.sleep(0.5)


def _run_id(name: str, run_id: str | None, as_json: bool) -> str:
    """The given run, or the latest one of the campaign."""
    run_id = run_id or next(iter(_services().runs.runs(name)), None)
    if run_id is None:
        _fail({"error": f"no runs of {name!r}"}, as_json, 1)
    return run_id


@campaign_app.command("status")
def campaign_status(
    name: str, run_id: Annotated[str | None, typer.Argument()] = None, as_json: JsonFlag = False
) -> None:
    """Counters of a run (the latest when no run id is given): queued, sent, failed by code, skipped,
    and from the status webhooks delivered, read and undelivered by code.

    Example: wa-dispatch campaign status friday-sale
    """
    run_id = _run_id(name, run_id, as_json)
    runs = _services().runs
    _emit({**runs.counts(name, run_id), **runs.delivery(name, run_id)}, as_json, f"{name} run {run_id}")


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
]


@campaign_app.command("report")
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
    rows = _services().runs.report(name, run_id)
    if csv_file:
        with csv_file.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        summary = {"campaign": name, "run_id": run_id, "recipients": len(rows), "csv": str(csv_file)}
        if as_json:
            _emit(summary, as_json, "report")
        else:
            console.print(f"{name} run {run_id}: {len(rows)} recipients written to {csv_file}")
        return
    table = Table(title=f"{name} run {run_id}: {len(rows)} recipients", title_justify="left")
    for column in ("to", "status", "wamid or error", "reason", "delivery"):
        table.add_column(column, overflow="fold")
    for r in rows:
        delivery = r["delivery_status"] or ""
        table.add_row(
            r["to"],
            r["status"],
            r["wamid"] or (f"({r['error_code']}) {r['error']}" if r["error"] else ""),
            r["reason"] or "",
            f"{delivery} ({r['delivery_error_code']})" if r["delivery_error_code"] else delivery,
        )
    _emit({"campaign": name, "run_id": run_id, "recipients": rows}, as_json, "report", table)


@optout_app.command("add")
def optout_add(numbers: list[str], as_json: JsonFlag = False) -> None:
    """Never send campaign messages to these numbers.  Example: wa-dispatch optout add +919999595313"""
    added = _services().runs.opt_out(*_phones(numbers, as_json))
    _emit({"added": added}, as_json, "opted out")


@optout_app.command("remove")
def optout_remove(numbers: list[str], as_json: JsonFlag = False) -> None:
    """Let these numbers receive campaign messages again."""
    removed = _services().runs.opt_in(*_phones(numbers, as_json))
    _emit({"removed": removed}, as_json, "opted in again")


@optout_app.command("list")
def optout_list(as_json: JsonFlag = False) -> None:
    """Every opted-out number."""
    _emit(_services().runs.opt_outs(), as_json, "opted-out numbers")


def _phones(numbers: list[str], as_json: bool) -> list[str]:
    from worker.delivery.intents import normalize_phone

    try:
        return [normalize_phone(n) for n in numbers]
    except ValueError as exc:
        _fail({"error": str(exc)}, as_json, 2)


@templates_app.command("sync")
def templates_sync(
    name: Annotated[str | None, typer.Option(help="Re-sync only this template (every language).")] = None,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Read every template of a sender's WABA (all pages) into the registry; exit 1 if the API refused.

    Example: wa-dispatch templates sync --sender support
    """
    from worker.delivery.templates import sync_registry

    number = _number(sender, as_json)
    try:
        done = sync_registry(number.client, number.templates, number.settings.template_sync_backoff, name)
    except DispatchError as exc:
        _fail({"error": f"template sync failed: {exc}", **exc.info}, as_json, 1)
    _emit(done, as_json, "template sync")


@templates_app.command("list")
def templates_list(sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """The synced templates, with their status; empty when never synced (then nothing is checked).

    Example: wa-dispatch templates list
    """
    registry = _number(sender, as_json).templates
    stale = registry.stale()
    rows = [
        {
            "name": t.name,
            "language": t.language,
            "status": t.status,
            "category": t.category,
            "parameter_format": t.parameter_format,
            "stale": t.key in stale,
        }
        for t in registry.all()
    ]
    meta = registry.meta()
    if as_json:
        _emit({"synced_at": meta.get("synced_at"), "templates": rows}, as_json, "templates")
        return
    _emit(rows, False, f"templates of WABA {registry.waba_id} (synced at {meta.get('synced_at', 'never')})")


@templates_app.command("show")
def templates_show(name: str, sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """One template in every language, with its components; exit 1 when it is not in the registry.

    Example: wa-dispatch templates show order_update
    """
    found = [t.model_dump(mode="json") for t in _number(sender, as_json).templates.named(name)]
    if not found:
        _fail({"error": f"no template {name!r} in the registry (wa-dispatch templates sync)"}, as_json, 1)
    if as_json:
        _emit(found, as_json, name)
        return
    for template in found:
        _emit(template, False, f"{template['name']} ({template['language']})")


@media_app.command("upload")
def media_upload(
    file: Path,
    mime_type: Annotated[
        str | None, typer.Option(help="The file's MIME type (default: from its name).")
    ] = None,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload a file to a sender's number, checked first against Meta's type and size rules; print
    its media id.

    Example: wa-dispatch media upload receipt.png
    """
    from producers import upload_media

    try:
        media_id = upload_media(file, mime_type, sender=sender)
    except DispatchError as exc:
        _fail({"error": str(exc), **exc.info}, as_json, 1)
    except OSError as exc:
        _fail({"error": f"cannot read {file}: {exc.strerror}"}, as_json, 2)
    _emit({"id": media_id, "file": str(file)}, as_json, "uploaded")


def _media_call(method: str, media_id: str, sender: str | None, as_json: bool) -> dict[str, Any]:
    if not media_id.isdigit():  # it becomes a path of the API's URL
        _fail({"error": f"a media id is digits, given {media_id!r}"}, as_json, 2)
    try:
        return _number(sender, as_json).client.call(method, media_id).body
    except DispatchError as exc:
        _fail({"error": str(exc), **exc.info}, as_json, 1)


@media_app.command("show")
def media_show(media_id: str, sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """A media id's URL (valid for 5 minutes), MIME type, sha256 and size.

    Example: wa-dispatch media show 1037543291543636
    """
    _emit(_media_call("GET", media_id, sender, as_json), as_json, f"media {media_id}")


@media_app.command("delete")
def media_delete(media_id: str, sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """Delete an uploaded media id.  Example: wa-dispatch media delete 1037543291543636"""
    _emit(_media_call("DELETE", media_id, sender, as_json), as_json, f"media {media_id} deleted")


@app.command()
def health(
    check: Annotated[
        list[str] | None, typer.Option(help="Only these: redis, credentials, workers, api, breaker.")
    ] = None,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Check Redis, a sender's credentials, API host and breaker, and the workers, without sending
    anything; exit 1 if any fails.

    Example (a Kubernetes readiness probe): wa-dispatch health --check redis --check credentials
    """
    from worker import app as celery_app
    from worker.ops.health import CHECK_NAMES, Checks

    unknown = sorted(set(check or []) - set(CHECK_NAMES))
    if unknown:
        _fail({"error": f"unknown checks {unknown}: choose from {', '.join(CHECK_NAMES)}"}, as_json, 2)
    number = _number(sender, as_json)
    checks = Checks(number.settings, lambda timeout: celery_app.control.ping(timeout=timeout), number.breaker)
    results = checks.run(check or list(CHECK_NAMES))
    rows = [
        {"check": name, "ok": r["ok"], "detail": {k: v for k, v in r.items() if k != "ok"}}
        for name, r in results.items()
    ]
    _emit(results, as_json, "health", _table(rows, "health"))
    if not all(r["ok"] for r in results.values()):
        raise typer.Exit(1)


@senders_app.command("list")
def senders_list(as_json: JsonFlag = False) -> None:
    """The senders this deployment knows (DISPATCH_SENDERS and the INTERAKT_* `default`), tokens
    masked; with a daily_limit, the unique template recipients counted in the last 24 hours."""
    rows = [
        {
            "sender": number.name,
            "phone_number_id": number.settings.phone_number_id,
            "waba_id": number.settings.waba_id,
            "api_url": number.settings.api_url,
            "rate_limit": number.settings.rate_limit,
            "daily_limit": number.settings.daily_limit,
            "daily_used": number.reach.used() if number.settings.daily_limit else None,
            "token": "********" if number.settings.access_token else None,
        }
        for number in _services().send.senders.values()
    ]
    _emit(rows, as_json, "senders")


@senders_app.command("check")
def senders_check(file: Path, as_json: JsonFlag = False) -> None:
    """Validate a senders file (and that each token's variable or file is there); exit 1 if not.

    Example: wa-dispatch senders check /etc/wa-dispatch/senders.toml
    """
    from worker.delivery.senders import SendersError, load_senders

    try:
        found = load_senders(file, get_settings())
    except SendersError as exc:
        _fail({"error": str(exc)}, as_json, 1)
    _emit(
        [{"sender": name, "phone_number_id": s.phone_number_id} for name, s in found.items()],
        as_json,
        "valid",
    )


@api_key_app.command("new")
def api_key_new(
    name: Annotated[str, typer.Argument(help="Who uses the key, e.g. the app's name (in logs and limits).")],
    sender: Annotated[
        list[str] | None, typer.Option("--sender", help="Limit the key to this sender (repeatable).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a key for the HTTP API: give `key` to the app, add `entry` to DISPATCH_API_KEYS (or a
    line of DISPATCH_API_KEYS_FILE). The entry holds only the key's SHA-256; the key is shown once.

    Example: wa-dispatch api-key new shopify-app --sender support
    """
    from worker.web.auth import ApiKeysError, key_entry, new_key

    key = new_key()
    try:
        entry = key_entry(name, key, sender)
    except ApiKeysError as exc:
        _fail({"error": str(exc)}, as_json, 2)
    _emit({"name": name, "key": key, "entry": entry, "senders": sender or None}, as_json, "new API key")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def flower(
    port: int = 5555,
    address: Annotated[
        str | None,
        typer.Option(help="Interface to listen on: all (0.0.0.0) with FLOWER_BASIC_AUTH, else 127.0.0.1."),
    ] = None,
) -> None:
    """Run Flower, the retry and failure dashboard, with its state kept in FLOWER_DB across restarts.

    Basic auth comes from FLOWER_BASIC_AUTH=user:password (read by Flower from the environment, so it
    never shows in `ps`). Without it Flower listens on 127.0.0.1 only, and refuses any other address.
    Example: FLOWER_BASIC_AUTH=ops:s3cret wa-dispatch flower --port 5555
    """
    import os
    import shutil
    import sys

    if os.environ.get("FLOWER_BASIC_AUTH"):
        address = address or "0.0.0.0"
    elif address is None or address in LOOPBACK:
        address = address or "127.0.0.1"
        typer.echo(
            f"FLOWER_BASIC_AUTH is not set: Flower listens on {address} only, without a password", err=True
        )
    else:
        typer.echo(f"refusing to listen on {address} without FLOWER_BASIC_AUTH=user:password", err=True)
        raise typer.Exit(2)
    db = os.environ.get("FLOWER_DB", "flower.db")
    beside = Path(sys.executable).parent / "celery"  # the celery of this environment, PATH or not
    celery = str(beside) if beside.exists() else shutil.which("celery") or "celery"
    os.execv(
        celery,
        [
            celery,
            "-A",
            "worker",
            "flower",
            f"--port={port}",
            f"--address={address}",
            "--persistent=True",
            f"--db={db}",
            "--state_save_interval=10000",
        ],
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
