"""What a customer sent, typed (pure): the part of an inbound message that says what it is, so an
app reads `content["kind"]` and its fields instead of digging in Meta's message object.

Every kind of Meta's webhook description (`../shared/meta`, `/whatsapp/webhooks`, and the Cloud
API's webhook reference for what it leaves out): text; media (image, video, audio, document,
sticker) by id with mime type, sha256, caption, filename, voice; location; contacts; reaction; a
template's quick-reply `button`; the interactive replies `button_reply`, `list_reply` and a Flow's
`nfm_reply` (its `response_json` parsed, `flow_token` apart); a catalog `order`; `system`
(a changed number); and `unsupported`. Beside the kind: `referral` (a click-to-WhatsApp ad) and
`errors`, which any message may carry. A shape this does not know is `unknown`, with the object
as it came: nothing a customer sends is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any


class InboundKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    REACTION = "reaction"
    BUTTON = "button"  # a template's quick-reply button
    BUTTON_REPLY = "button_reply"  # interactive reply buttons
    LIST_REPLY = "list_reply"
    FLOW_REPLY = "nfm_reply"  # a Flow's response
    ORDER = "order"
    SYSTEM = "system"
    UNSUPPORTED = "unsupported"
    UNKNOWN = "unknown"


MEDIA = ("image", "video", "audio", "document", "sticker")
MEDIA_FIELDS = ("id", "mime_type", "sha256", "caption", "filename", "voice", "animated")
INTERACTIVE = {"button_reply": ("id", "title"), "list_reply": ("id", "title", "description")}
REFERRAL_FIELDS = (
    "source_url",
    "source_id",
    "source_type",
    "headline",
    "body",
    "media_type",
    "image_url",
    "video_url",
    "thumbnail_url",
    "ctwa_clid",
)


def content(message: dict[str, Any]) -> dict[str, Any]:
    """The typed part of Meta's message object: `kind` and that kind's fields."""
    kind = message.get("type")
    if kind == "unsupported":
        return {"kind": InboundKind.UNSUPPORTED, "errors": errors(message)}
    part = message.get(kind) if isinstance(kind, str) else None
    read = _READERS.get(kind) if isinstance(kind, str) else None
    if kind in MEDIA and isinstance(part, dict):
        return {"kind": InboundKind(kind), **_pick(part, MEDIA_FIELDS)}
    if read is not None and isinstance(part, list if kind == "contacts" else dict):
        return read(part)
    return {"kind": InboundKind.UNKNOWN, "type": kind if isinstance(kind, str) else None, "object": message}


def referral(message: dict[str, Any]) -> dict[str, Any] | None:
    """The ad a customer came from (click-to-WhatsApp), on any kind of message."""
    raw = message.get("referral")
    return _pick(raw, REFERRAL_FIELDS) if isinstance(raw, dict) else None


def errors(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's errors (an unsupported kind, media too large, ...): code, title, details."""
    found = []
    for error in message.get("errors") or []:
        if isinstance(error, dict):
            data = error.get("error_data")
            details = data.get("details") if isinstance(data, dict) else None
            found.append({**_pick(error, ("code", "title", "message")), "details": details})
    return found


def changed_number(message: dict[str, Any]) -> tuple[str, str] | None:
    """(old wa_id, new wa_id) of a `system` message saying the customer changed their number."""
    part = message.get("system")
    if message.get("type") != "system" or not isinstance(part, dict):
        return None
    new = part.get("wa_id") or part.get("new_wa_id")
    old = message.get("from")
    if part.get("type") == "customer_changed_number" and isinstance(new, str) and isinstance(old, str):
        return old, new
    return None


def _interactive(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    reply = part.get(kind) if isinstance(kind, str) else None
    if kind in INTERACTIVE and isinstance(reply, dict):
        return {"kind": InboundKind(kind), **_pick(reply, INTERACTIVE[kind])}
    if kind == "nfm_reply" and isinstance(reply, dict):
        response = _json_object(reply.get("response_json"))
        return {
            "kind": InboundKind.FLOW_REPLY,
            "name": _str(reply.get("name")),
            "body": _str(reply.get("body")),
            "flow_token": _str(response.pop("flow_token", None)),
            "response": response,
        }
    return {"kind": InboundKind.UNKNOWN, "type": "interactive", "object": part}


def _order(part: dict[str, Any]) -> dict[str, Any]:
    items = [
        {
            "product_retailer_id": _str(item.get("product_retailer_id")),
            "quantity": _number(item.get("quantity")),
            "item_price": _number(item.get("item_price")),
            "currency": _str(item.get("currency")),
        }
        for item in part.get("product_items") or []
        if isinstance(item, dict)
    ]
    return {
        "catalog_id": _str(part.get("catalog_id")),
        "text": _str(part.get("text")),
        "product_items": items,
    }


def _location(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "latitude": _number(part.get("latitude")),
        "longitude": _number(part.get("longitude")),
        **_pick(part, ("name", "address", "url")),
    }


def _system(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": _str(part.get("type")),  # customer_changed_number, customer_identity_changed
        "body": _str(part.get("body")),
        "new_wa_id": _str(part.get("wa_id") or part.get("new_wa_id")),
        "identity": _str(part.get("identity")),
    }


def _pick(raw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: raw[name] for name in names if name in raw}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | int | None:
    """Meta writes some numbers as strings (a location's latitude in its description)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _text_part(part: dict[str, Any]) -> dict[str, Any]:
    return {"kind": InboundKind.TEXT, "body": _str(part.get("body"))}


def _contacts(part: list[Any]) -> dict[str, Any]:
    return {"kind": InboundKind.CONTACTS, "contacts": [c for c in part if isinstance(c, dict)]}


def _reaction(part: dict[str, Any]) -> dict[str, Any]:
    # No emoji: the customer took their reaction back.
    return {
        "kind": InboundKind.REACTION,
        "message_id": _str(part.get("message_id")),
        "emoji": _str(part.get("emoji")),
    }


def _button(part: dict[str, Any]) -> dict[str, Any]:
    return {"kind": InboundKind.BUTTON, "payload": _str(part.get("payload")), "text": _str(part.get("text"))}


_READERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "text": _text_part,
    "location": lambda part: {"kind": InboundKind.LOCATION, **_location(part)},
    "contacts": _contacts,
    "reaction": _reaction,
    "button": _button,
    "interactive": _interactive,
    "order": lambda part: {"kind": InboundKind.ORDER, **_order(part)},
    "system": lambda part: {"kind": InboundKind.SYSTEM, **_system(part)},
}
