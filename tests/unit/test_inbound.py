"""Typed inbound (pure): every inbound example of Meta's webhook description, and the kinds it has
no example of (as the Cloud API's webhook reference shapes them), read into `content` with their
fields; what the app's task is told, with `reply_to` when the customer answered one of ours; a
payment's status for an order; and the group and account events dropped by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.webhooks import payment_body
from worker.statuses.apply import inbound, payment_change
from worker.statuses.events import parse
from worker.statuses.inbound import InboundKind, changed_number, content, referral

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "meta" / "business-messaging-api_v23.0.yaml"
MEDIA = {
    "id": "1037543291543636",
    "mime_type": "image/jpeg",
    "sha256": "BpeL/VNiP1t+4g==",
    "caption": "Damaged",
}


def meta_examples() -> dict[str, dict[str, Any]]:
    """Meta's inbound webhook examples, by name, with their message objects."""
    doc = yaml.safe_load(SPEC.read_text())
    media = doc["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in media["examples"].items()}


# Each of Meta's examples that carries a message, and the kind (and a field) it is read as.
EXPECTED = {
    "Text Message": (InboundKind.TEXT, "body"),
    "Text Message with Context (Product Inquiry)": (InboundKind.TEXT, "body"),
    "Text Message from Click to WhatsApp Ad": (InboundKind.TEXT, "body"),
    "Reaction Message": (InboundKind.REACTION, "emoji"),
    "Image Message": (InboundKind.IMAGE, "id"),
    "Location Message": (InboundKind.LOCATION, "latitude"),
    "Contact Sharing Message": (InboundKind.CONTACTS, "contacts"),
    "Unsupported Message": (InboundKind.UNSUPPORTED, "errors"),
    "Button Message": (InboundKind.BUTTON, "payload"),
    "Interactive List Reply Message": (InboundKind.LIST_REPLY, "id"),
    "Interactive Button Reply Message": (InboundKind.BUTTON_REPLY, "title"),
    "Order Message": (InboundKind.ORDER, "product_items"),
    "System Message": (InboundKind.SYSTEM, "new_wa_id"),
}


def test_every_inbound_example_of_meta_is_read_as_its_kind() -> None:
    examples = meta_examples()
    with_messages = {n for n, v in examples.items() if v["entry"][0]["changes"][0]["value"].get("messages")}
    assert with_messages == set(EXPECTED)  # a new example in Meta's file is a kind to type here
    for name, (kind, field) in EXPECTED.items():
        parsed = parse(examples[name], now=1.0)
        (message,) = parsed.messages
        typed = content(message.message)
        assert typed["kind"] == kind, name
        assert typed[field] not in (None, [], ""), (name, typed)
    ad = parse(examples["Text Message from Click to WhatsApp Ad"], now=1.0).messages[0]
    assert (referral(ad.message) or {}).get("source_type")


def message(type_: str, part: Any, **more: Any) -> dict[str, Any]:
    return {
        "from": "919876500011",
        "id": "wamid.IN",
        "timestamp": "1767225600",
        "type": type_,
        type_: part,
        **more,
    }


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document", "sticker"])
def test_media_keeps_what_a_download_and_its_check_need(kind: str) -> None:
    part = (
        {**MEDIA, "filename": "photo.jpg", "voice": True}
        if kind != "sticker"
        else {**MEDIA, "animated": False}
    )
    typed = content(message(kind, part))
    assert typed == {"kind": kind, **part}


def test_a_flows_reply_is_parsed_with_its_flow_token_apart() -> None:
    response = {"flow_token": "booking-42", "party_size": "2", "date": "2026-12-24"}
    raw = message(
        "interactive",
        {
            "type": "nfm_reply",
            "nfm_reply": {"name": "flow", "body": "Sent", "response_json": json.dumps(response)},
        },
    )
    assert content(raw) == {
        "kind": InboundKind.FLOW_REPLY,
        "name": "flow",
        "body": "Sent",
        "flow_token": "booking-42",
        "response": {"party_size": "2", "date": "2026-12-24"},
    }
    broken = message("interactive", {"type": "nfm_reply", "nfm_reply": {"response_json": "{not json"}})
    assert content(broken)["response"] == {} and content(broken)["flow_token"] is None


def test_an_order_a_location_and_an_unknown_kind() -> None:
    order = message(
        "order",
        {
            "catalog_id": "194836987003835",
            "text": "2 loaves",
            "product_items": [
                {"product_retailer_id": "sku-bread-01", "quantity": 2, "item_price": 250.5, "currency": "INR"}
            ],
        },
    )
    assert content(order)["product_items"] == [
        {"product_retailer_id": "sku-bread-01", "quantity": 2, "item_price": 250.5, "currency": "INR"}
    ]
    place = content(message("location", {"latitude": "19.076", "longitude": 72.87, "name": "Shop"}))
    assert (place["latitude"], place["longitude"], place["name"]) == (19.076, 72.87, "Shop")
    future = message("hologram", {"x": 1})
    assert content(future) == {"kind": InboundKind.UNKNOWN, "type": "hologram", "object": future}
    assert content({"type": "text", "text": "not an object"})["kind"] == InboundKind.UNKNOWN


def test_a_changed_number_names_both_numbers() -> None:
    raw = message(
        "system",
        {
            "body": "User A changed from 91987 to 91988",
            "wa_id": "919876500012",
            "type": "customer_changed_number",
        },
    )
    assert changed_number(raw) == ("919876500011", "919876500012")
    assert changed_number(message("system", {"type": "customer_identity_changed", "identity": "x"})) is None
    assert changed_number(message("text", {"body": "hi"})) is None


def test_the_app_is_told_the_content_and_which_of_our_messages_was_answered() -> None:
    raw = message(
        "interactive",
        {"type": "button_reply", "button_reply": {"id": "slot-yes", "title": "Yes"}},
        context={"from": "15550001111", "id": "wamid.OURS"},
    )
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": {"messages": [raw]}}]}],
    }
    (parsed,) = parse(body, now=1.0).messages
    origin = {"task_id": "t-1", "key": "order-42", "campaign": "spring", "run_id": "r1", "intent": "{...}"}
    told = inbound(parsed, origin)
    assert told["content"] == {"kind": InboundKind.BUTTON_REPLY, "id": "slot-yes", "title": "Yes"}
    assert told["reply_to"] == {
        "wamid": "wamid.OURS",
        "task_id": "t-1",
        "idempotency_key": "order-42",
        "campaign": {"name": "spring", "run_id": "r1"},
    }
    assert inbound(parsed)["reply_to"] is None  # a message that is not ours
    assert told["message"] == raw and told["errors"] == [] and told["referral"] is None
    assert json.loads(json.dumps(told)) == told  # a task argument: JSON as it is


def test_a_payment_status_is_read_and_told_tied_to_its_order() -> None:
    body = payment_body("1122", "wamid.ORDER", "+919876500011", "order-2024-0042", status="captured")
    parsed = parse(body, now=1.0)
    assert parsed.statuses == [] and len(parsed.payments) == 1  # not a delivery status
    (payment,) = parsed.payments
    assert (payment.wamid, payment.reference_id, payment.status, payment.currency) == (
        "wamid.ORDER",
        "order-2024-0042",
        "captured",
        "INR",
    )
    told = payment_change(payment, {"task_id": "t-1", "key": "order-42"})
    assert (told["task_id"], told["idempotency_key"], told["transaction"]["method"]) == (
        "t-1",
        "order-42",
        {"type": "upi"},
    )
    pending = payment_change(
        parse(payment_body("1122", "wamid.ORDER", "+91", "order-2024-0042", "pending"), 1.0).payments[0], {}
    )
    assert pending["event_id"] != told["event_id"] and pending["task_id"] is None


def test_group_and_account_events_are_dropped_by_name() -> None:
    examples = meta_examples()
    groups = [n for n, v in examples.items() if v["entry"][0]["changes"][0]["field"].startswith("group_")]
    assert len(groups) == 3
    for name in groups:
        parsed = parse(examples[name], now=1.0)
        assert parsed.events == 0 and parsed.dropped == [examples[name]["entry"][0]["changes"][0]["field"]]
