"""`media`: a sender's uploaded media, by id."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from producers.cli.base import JsonFlag, SenderOption, chosen_sender, command_group, emit, fail
from worker.delivery.errors import DispatchError

media_group = command_group("media", "Media of the sending number: upload, show, download, delete.")


@media_group.command("upload")
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
        fail({"error": str(exc), **exc.info}, as_json, 1)
    except OSError as exc:
        fail({"error": f"cannot read {file}: {exc.strerror}"}, as_json, 2)
    emit({"id": media_id, "file": str(file)}, as_json, "uploaded")


def _media_call(method: str, media_id: str, sender: str | None, as_json: bool) -> dict[str, Any]:
    if not media_id.isdigit():  # it becomes a path of the API's URL
        fail({"error": f"a media id is digits, given {media_id!r}"}, as_json, 2)
    try:
        return chosen_sender(sender, as_json).client.call(method, media_id).body
    except DispatchError as exc:
        fail({"error": str(exc), **exc.info}, as_json, 1)


@media_group.command("show")
def media_show(media_id: str, sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """A media id's URL (valid for 5 minutes), MIME type, sha256 and size.

    Example: wa-dispatch media show 1037543291543636
    """
    emit(_media_call("GET", media_id, sender, as_json), as_json, f"media {media_id}")


@media_group.command("delete")
def media_delete(media_id: str, sender: SenderOption = None, as_json: JsonFlag = False) -> None:
    """Delete an uploaded media id.  Example: wa-dispatch media delete 1037543291543636"""
    emit(_media_call("DELETE", media_id, sender, as_json), as_json, f"media {media_id} deleted")


@media_group.command("download")
def media_download(
    media_id: str,
    path: Annotated[Path, typer.Argument(help="Where to save it.")],
    sha256: Annotated[str | None, typer.Option(help="The webhook's sha256 to check it against.")] = None,
    sender: SenderOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Save a media id's file (a customer's photo, a payment screenshot), size capped and checked
    against its sha256; exit 1 when a check fails (nothing is left at PATH).

    Example: wa-dispatch media download 1037543291543636 photo.jpg
    """
    from worker.delivery.media import download

    try:
        saved = download(chosen_sender(sender, as_json).client, media_id, path, sha256=sha256)
    except DispatchError as exc:
        fail({"error": str(exc), **exc.info}, as_json, 2 if exc.kind == "invalid" else 1)
    except OSError as exc:
        fail({"error": f"cannot write {path}: {exc.strerror}"}, as_json, 2)
    emit(asdict(saved), as_json, "downloaded")
