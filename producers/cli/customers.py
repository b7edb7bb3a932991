"""`forget`: a customer's number and messages erased on request (worker.ops.erasure)."""

from __future__ import annotations

from typing import Annotated

import typer

from producers.cli.base import JsonFlag, app, emit, fail


@app.command()
def forget(
    number: Annotated[
        str, typer.Argument(help="The customer's number (E.164, or digits with the country code).")
    ],
    check: Annotated[bool, typer.Option(help="Only list the keys that still hold the number.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Erase a customer's number and messages from every key in Redis (the state, the broker's
    queues, the results), keeping only a salted hash where a record must remain (an opt-out, an
    idempotency key's state). Queued messages to the number are cancelled. Prints what it removed;
    with --check, lists what still holds the number and exits 1 when anything does.

    Example: wa-dispatch forget +919999595313
    """
    from worker.delivery.intents import normalize_phone
    from worker.ops.erasure import Eraser
    from worker.settings import get_settings

    try:
        e164 = normalize_phone(number)
    except ValueError as exc:
        fail({"error": str(exc), "number": number}, as_json, 2)
    eraser = Eraser.of_deployment(get_settings())
    if check:
        held = eraser.still_held(e164)
        emit({"number": e164, "still_held_by": held}, as_json, f"keys holding {e164}")
        raise typer.Exit(1 if held else 0)
    emit(eraser.forget(e164).as_dict(), as_json, f"forgot {e164}")
