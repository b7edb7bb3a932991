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


def mark_read(
    message_id: str, sender: str | None = None, typing: bool = False, **options: Any
) -> AsyncResult:
    """Mark an inbound message read, on the number (`sender`) that received it; with `typing`,
    the customer also sees "typing..." until the reply (Meta's typing indicator, up to 25 s)."""
    receipt: dict[str, Any] = {"message_id": message_id, **({"sender": sender} if sender else {})}
    if typing:
        receipt["typing_indicator"] = {"type": "text"}
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


# --- the kinds of Meta's Cloud API beyond buttons and lists (issue 25) --------------------------------


def _priced(item: dict[str, Any]) -> int:
    """An order item's price in paise: its sale_amount when it has one (Meta's subtotal rule)."""
    return int((item.get("sale_amount") or item["amount"])["value"]) * int(item["quantity"])


def _paise(value: int | None) -> dict[str, int] | None:
    return None if value is None else {"value": value, "offset": 100}


def send_order_details(
    to: str,
    body: str,
    reference_id: str,
    items: list[dict[str, Any]],
    payment_settings: list[dict[str, Any]],
    tax: int,
    shipping: int | None = None,
    discount: int | None = None,
    goods: Literal["digital-goods", "physical-goods"] = "physical-goods",
    expiration: int | None = None,
    header: dict[str, Any] | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """An invoice to pay in WhatsApp (India, INR). `items` as the API takes them ({retailer_id,
    name, amount: {value, offset: 100}, quantity, sale_amount?}); tax, shipping and discount in
    paise. The subtotal and total are computed, as Meta's rules fix them; `expiration` is a Unix
    time at least 300 s away."""
    subtotal = sum(_priced(item) for item in items)
    total = subtotal + tax + (shipping or 0) - (discount or 0)
    order = _compact(
        {
            "status": "pending",
            "items": items,
            "subtotal": _paise(subtotal),
            "tax": _paise(tax),
            "shipping": _paise(shipping),
            "discount": _paise(discount),
            "expiration": {"timestamp": str(expiration)} if expiration is not None else None,
        }
    )
    parameters = {
        "reference_id": reference_id,
        "type": goods,
        "payment_settings": payment_settings,
        "currency": "INR",
        "total_amount": _paise(total),
        "order": order,
    }
    content = _frame(
        "order_details", body, {"name": "review_and_pay", "parameters": parameters}, None, footer
    )
    return send_interactive(to, _compact({**content, "header": header}), **kw)


def send_order_status(
    to: str,
    reference_id: str,
    status: Literal["pending", "processing", "partially-shipped", "shipped", "completed", "canceled"],
    body: str,
    description: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """Move an order sent with `send_order_details` (the same `reference_id`) to `status`."""
    order = _compact({"status": status, "description": description})
    action = {"name": "review_order", "parameters": {"reference_id": reference_id, "order": order}}
    return send_interactive(to, _frame("order_status", body, action, None, footer), **kw)


def send_flow(
    to: str,
    body: str,
    flow_cta: str,
    flow_id: str | None = None,
    flow_name: str | None = None,
    flow_token: str | None = None,
    screen: str | None = None,
    data: dict[str, Any] | None = None,
    flow_action: Literal["navigate", "data_exchange"] = "navigate",
    mode: Literal["draft", "published"] | None = None,
    header: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """A button opening a Flow (by `flow_id` or `flow_name`), on `screen` with `data` when it navigates."""
    payload = _compact({"screen": screen, "data": data}) if screen else None
    parameters = _compact(
        {
            "flow_message_version": "3",
            "flow_token": flow_token,
            "flow_id": flow_id,
            "flow_name": flow_name,
            "flow_cta": flow_cta,
            "mode": mode,
            "flow_action": flow_action,
            "flow_action_payload": payload,
        }
    )
    action = {"name": "flow", "parameters": parameters}
    return send_interactive(to, _frame("flow", body, action, header, footer), **kw)


def _cta_url(display_text: str, url: str) -> dict[str, Any]:
    return {"name": "cta_url", "parameters": {"display_text": display_text, "url": url}}


def send_cta_url(
    to: str,
    body: str,
    display_text: str,
    url: str,
    header: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """A button (`display_text`, at most 20 characters) that opens `url`."""
    return send_interactive(to, _frame("cta_url", body, _cta_url(display_text, url), header, footer), **kw)


def send_location_request(to: str, body: str, **kw: Any) -> AsyncResult:
    """Ask for the customer's location; the answer comes back as a location message."""
    action = {"name": "send_location"}
    return send_interactive(to, _frame("location_request_message", body, action, None, None), **kw)


def send_address_request(
    to: str,
    body: str,
    values: dict[str, str] | None = None,
    saved_addresses: list[dict[str, Any]] | None = None,
    header: str | None = None,
    footer: str | None = None,
    **kw: Any,
) -> AsyncResult:
    """Ask for a delivery address (India), the form prefilled with `values`."""
    parameters = _compact({"country": "IN", "values": values, "saved_addresses": saved_addresses})
    action = {"name": "address_message", "parameters": parameters}
    return send_interactive(to, _frame("address_message", body, action, header, footer), **kw)


def send_carousel(to: str, body: str, cards: list[dict[str, Any]], **kw: Any) -> AsyncResult:
    """2 to 10 cards, each {"image" or "video": link, "display_text", "url", "body"?}, numbered in order."""

    def card(index: int, spec: dict[str, Any]) -> dict[str, Any]:
        kind = "video" if "video" in spec else "image"
        return _compact(
            {
                "card_index": index,
                "type": "cta_url",
                "header": {"type": kind, kind: {"link": spec[kind]}},
                "body": {"text": spec["body"]} if spec.get("body") else None,
                "action": _cta_url(spec["display_text"], spec["url"]),
            }
        )

    action = {"cards": [card(i, c) for i, c in enumerate(cards)]}
    return send_interactive(to, _frame("carousel", body, action, None, None), **kw)


def send_otp(to: str, name: str, code: str, language: str = "en_US", **kw: Any) -> AsyncResult:
    """An authentication template's one-time code: in its body, and in its OTP button (copy code,
    one-tap or zero-tap), which a send fills as a url button with the code."""
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": code}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": code}]},
    ]
    return send_template(to, name, language, components, **kw)


__all__ += [  # the helpers above
    "send_address_request",
    "send_carousel",
    "send_cta_url",
    "send_flow",
    "send_location_request",
    "send_order_details",
    "send_order_status",
    "send_otp",
]
