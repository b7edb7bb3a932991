"""Operating the sending: a number's breaker (pause, resume), health checks, and Flower."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from producers.cli.base import JsonFlag, SenderOption, app, chosen_sender, emit, fail, table_of


@app.command()
def pause(
    reason: Annotated[str, typer.Option(help="Why, for the logs and `breaker`.")] = "paused by hand",
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Stop sending for a sender's number; queued intents wait, none fails. Undo with `resume`."""
    chosen_sender(sender, as_json).breaker.pause(reason)
    breaker(sender=sender, as_json=as_json)


@app.command()
def resume(sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """Resume sending after a pause or an account error."""
    chosen_sender(sender, as_json).breaker.close()
    breaker(sender=sender, as_json=as_json)


@app.command()
def breaker(sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """Show the account circuit breaker of a sender's number (closed = sending)."""
    number = chosen_sender(sender, as_json)
    data = {
        "sender": number.name,
        "phone_number_id": number.settings.phone_number_id,
        **number.breaker.status(),
    }
    emit(data, as_json, "account circuit breaker")


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
        fail({"error": f"unknown checks {unknown}: choose from {', '.join(CHECK_NAMES)}"}, as_json, 2)
    number = chosen_sender(sender, as_json)
    checks = Checks(number.settings, lambda timeout: celery_app.control.ping(timeout=timeout), number.breaker)
    results = checks.run(check or list(CHECK_NAMES))
    rows = [
        {"check": name, "ok": r["ok"], "detail": {k: v for k, v in r.items() if k != "ok"}}
        for name, r in results.items()
    ]
    emit(results, as_json, "health", table_of(rows, "health"))
    if not all(r["ok"] for r in results.values()):
        raise typer.Exit(1)


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
