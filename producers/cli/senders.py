"""`senders` and `api-key`: the numbers this deployment sends from, and keys of the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from producers.cli.base import JsonFlag, command_group, emit, fail, services
from worker.settings import get_settings

senders_group = command_group("senders", "The numbers this deployment sends from.")
api_key_group = command_group("api-key", "Keys of the HTTP API (DISPATCH_API_KEYS).")


@senders_group.command("list")
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
        for number in services().send.senders.values()
    ]
    emit(rows, as_json, "senders")


@senders_group.command("check")
def senders_check(file: Path, as_json: JsonFlag = False) -> None:
    """Validate a senders file (and that each token's variable or file is there); exit 1 if not.

    Example: wa-dispatch senders check /etc/wa-dispatch/senders.toml
    """
    from worker.delivery.senders import SendersError, load_senders

    try:
        found = load_senders(file, get_settings())
    except SendersError as exc:
        fail({"error": str(exc)}, as_json, 1)
    emit(
        [{"sender": name, "phone_number_id": s.phone_number_id} for name, s in found.items()],
        as_json,
        "valid",
    )


@api_key_group.command("new")
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
        fail({"error": str(exc)}, as_json, 2)
    emit({"name": name, "key": key, "entry": entry, "senders": sender or None}, as_json, "new API key")
