"""The public face for apps: one typed helper per message type, each returning the task's AsyncResult.

Every helper builds the same keyword arguments `worker.tasks.send_message` takes and enqueues
them with `apply_async`, so a bad intent raises `InvalidIntent` here, before Redis sees it.
Extra keyword arguments (`idempotency_key`, `sender`, and Celery options such as `countdown`,
`eta`, `queue`, `priority`) pass through.

    from producers import send_text
    result = send_text("+919999595313", "Your order has shipped", idempotency_key="order-123-shipped")
    result.get(timeout=30)["wamid"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from celery.result import AsyncResult

from worker.delivery.media import Downloaded, download, upload_file
from worker.message_status import delivery_status
from worker.services import services
from worker.tasks import mark_read as _mark_read
from worker.tasks import send_message

__all__ = [
    "delivery_status",
    "download_media",
    "mark_read",
    "send",
    "send_audio",
    "send_buttons",
    "send_catalog",
    "send_contacts",
    "send_document",
    "send_image",
    "send_interactive",
    "send_list",
    "send_location",
    "send_product",
    "send_product_list",
    "send_reaction",
    "send_sticker",
    "send_template",
    "send_text",
    "send_video",
    "upload_media",
]


def _compact(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def send(
    to: str,
    type: str,
    content: dict[str, Any] | list[dict[str, Any]],
    *,
    reply_to: str | None = None,
    idempotency_key: str | None = None,
    sender: str | None = None,
    **options: Any,
) -> AsyncResult:
    """Enqueue any message type; `reply_to` is the wamid to quote (the API's `context.message_id`),
    `sender` one of DISPATCH_SENDERS (`default` when not given)."""
    intent: dict[str, Any] = {"to": to, "type": type, type: content}
    if reply_to:
        intent["context"] = {"message_id": reply_to}
    if idempotency_key:
        intent["idempotency_key"] = idempotency_key
    if sender:
        intent["sender"] = sender
    return send_message.apply_async(kwargs=intent, **options)


def send_text(
    to: str, body: str, preview_url: bool = False, reply_to: str | None = None, **kw: Any
) -> AsyncResult:
    return send(to, "text", {"preview_url": preview_url, "body": body}, reply_to=reply_to, **kw)


MediaType = Literal["image", "video", "audio", "document", "sticker"]


def send_media(
    to: str,
    kind: MediaType,
    *,
    link: str | None = None,
    id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    reply_to: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """Media by uploaded `id` (recommended by Meta) or public `link`; exactly one of them."""
    media = _compact({"id": id, "link": link, "caption": caption, "filename": filename})
    return send(to, kind, media, reply_to=reply_to, **kw)


def send_image(
    to: str, link: str | None = None, id: str | None = None, caption: str | None = None, **kw: Any
) -> AsyncResult:
    return send_media(to, "image", link=link, id=id, caption=caption, **kw)


def send_video(
    to: str, link: str | None = None, id: str | None = None, caption: str | None = None, **kw: Any
) -> AsyncResult:
    return send_media(to, "video", link=link, id=id, caption=caption, **kw)


def send_audio(to: str, link: str | None = None, id: str | None = None, **kw: Any) -> AsyncResult:
    return send_media(to, "audio", link=link, id=id, **kw)


def send_sticker(to: str, link: str | None = None, id: str | None = None, **kw: Any) -> AsyncResult:
    return send_media(to, "sticker", link=link, id=id, **kw)


def send_document(
    to: str,
    link: str | None = None,
    id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    **kw: Any,
) -> AsyncResult:
    return send_media(to, "document", link=link, id=id, caption=caption, filename=filename, **kw)


def send_reaction(to: str, message_id: str, emoji: str, **kw: Any) -> AsyncResult:
    """React to `message_id`; an empty `emoji` removes the reaction."""
    return send(to, "reaction", {"message_id": message_id, "emoji": emoji}, **kw)


def send_location(
    to: str, latitude: float, longitude: float, name: str | None = None, address: str | None = None, **kw: Any
) -> AsyncResult:
    location = _compact({"latitude": latitude, "longitude": longitude, "name": name, "address": address})
    return send(to, "location", location, **kw)


def send_contacts(to: str, contacts: list[dict[str, Any]], **kw: Any) -> AsyncResult:
    return send(to, "contacts", contacts, **kw)


def send_interactive(to: str, interactive: dict[str, Any], **kw: Any) -> AsyncResult:
    """Any interactive object as the API takes it (button, list, product, product_list, catalog_message)."""
    return send(to, "interactive", interactive, **kw)


def _frame(
    kind: str, body: str | None, action: dict[str, Any], header: str | None, footer: str | None
) -> dict[str, Any]:
    return _compact(
        {
            "type": kind,
            "header": {"type": "text", "text": header} if header else None,
            "body": {"text": body} if body else None,
            "footer": {"text": footer} if footer else None,
            "action": action,
        }
    )


def send_buttons(
    to: str,
    body: str,
    buttons: dict[str, str],
    header: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """Up to 3 reply buttons, given as {id: title}."""
    action = {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in buttons.items()]}
    return send_interactive(to, _frame("button", body, action, header, footer), **kw)


def send_list(
    to: str,
    body: str,
    button: str,
    sections: list[dict[str, Any]],
    header: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """A list menu: `sections` as the API takes them,
    [{"title": ..., "rows": [{"id", "title", "description"}]}]."""
    return send_interactive(
        to, _frame("list", body, {"button": button, "sections": sections}, header, footer), **kw
    )


def send_product(
    to: str,
    catalog_id: str,
    product_retailer_id: str,
    body: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    action = {"catalog_id": catalog_id, "product_retailer_id": product_retailer_id}
    return send_interactive(to, _frame("product", body, action, None, footer), **kw)


def send_product_list(
    to: str,
    catalog_id: str,
    sections: dict[str, list[str]],
    header: str,
    body: str,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """A multi-product message: `sections` as {section title: [product_retailer_id, ...]}."""
    action = {
        "catalog_id": catalog_id,
        "sections": [
            {"title": title, "product_items": [{"product_retailer_id": p} for p in products]}
            for title, products in sections.items()
        ],
    }
    return send_interactive(to, _frame("product_list", body, action, header, footer), **kw)


def send_catalog(
    to: str, body: str, thumbnail_product_retailer_id: str | None = None, footer: str | None = None, **kw: Any
) -> AsyncResult:
    action: dict[str, Any] = {"name": "catalog_message"}
    if thumbnail_product_retailer_id:
        action["parameters"] = {"thumbnail_product_retailer_id": thumbnail_product_retailer_id}
    return send_interactive(to, _frame("catalog_message", body, action, None, footer), **kw)


def send_template(
    to: str, name: str, language: str, components: list[dict[str, Any]] | None = None, **kw: Any
) -> AsyncResult:
    """An approved template: the only kind of message allowed outside the 24-hour customer window."""
    template = _compact(
        {"name": name, "language": {"policy": "deterministic", "code": language}, "components": components}
    )
    return send(to, "template", template, **kw)


def mark_read(message_id: str, sender: str | None = None, **options: Any) -> AsyncResult:
    """Mark an inbound message read, on the number (`sender`) that received it."""
    receipt = {"message_id": message_id, **({"sender": sender} if sender else {})}
    return _mark_read.apply_async(kwargs=receipt, **options)


def upload_media(file: str | Path | bytes, mime_type: str | None = None, sender: str | None = None) -> str:
    """Upload a file (a path or its bytes) to a sender's number and return its media id, to send
    with `send_image(to, id=..., sender=...)` and the like. The type and size are checked first
    (InvalidIntent names the rule: image jpeg/png 5 MB, video mp4/3gp 16 MB, audio 16 MB, document
    100 MB, sticker webp 100 KB / 500 KB animated). Unlike the send helpers this calls the API from
    this process, so it needs the sender's settings (and token) here too."""
    number = services().send.sender(sender)
    return upload_file(number.client, number.settings.phone_number_id, file, mime_type)


def download_media(
    media_id: str, path: str | Path, sender: str | None = None, sha256: str | None = None
) -> Downloaded:
    """Save a customer's media (an inbound message's `image.id`, ...) to `path`, its size capped
    and its content checked against its sha256 (the webhook's, when given). Like `upload_media`
    it calls the API from this process, with the sender's settings and token."""
    number = services().send.sender(sender)
    return download(number.client, media_id, path, sha256=sha256)
