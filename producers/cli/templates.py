"""`templates`: the template registry synced from a sender's WABA, listed and shown."""

from __future__ import annotations

from typing import Annotated

import typer

from producers.cli.base import JsonFlag, SenderOption, chosen_sender, command_group, emit, fail
from worker.delivery.errors import DispatchError

templates_group = command_group(
    "templates", "The template registry: sync the WABA's templates, list them, show one."
)


@templates_group.command("sync")
def templates_sync(
    name: Annotated[str | None, typer.Option(help="Re-sync only this template (every language).")] = None,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Read every template of a sender's WABA (all pages) into the registry; exit 1 if the API refused.

    Example: wa-dispatch templates sync --sender support
    """
    from worker.delivery.templates import sync_registry

    number = chosen_sender(sender, as_json)
    try:
        done = sync_registry(number.client, number.templates, number.settings.template_sync_backoff, name)
    except DispatchError as exc:
        fail({"error": f"template sync failed: {exc}", **exc.info}, as_json, 1)
    emit(done, as_json, "template sync")


@templates_group.command("list")
def templates_list(sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """The synced templates, with their status; empty when never synced (then nothing is checked).

    Example: wa-dispatch templates list
    """
    registry = chosen_sender(sender, as_json).templates
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
        emit({"synced_at": meta.get("synced_at"), "templates": rows}, as_json, "templates")
        return
    emit(rows, False, f"templates of WABA {registry.waba_id} (synced at {meta.get('synced_at', 'never')})")


@templates_group.command("show")
def templates_show(name: str, sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """One template in every language, with its components; exit 1 when it is not in the registry.

    Example: wa-dispatch templates show order_update
    """
    found = [t.model_dump(mode="json") for t in chosen_sender(sender, as_json).templates.named(name)]
    if not found:
        fail({"error": f"no template {name!r} in the registry (wa-dispatch templates sync)"}, as_json, 1)
    if as_json:
        emit(found, as_json, name)
        return
    for template in found:
        emit(template, False, f"{template['name']} ({template['language']})")
