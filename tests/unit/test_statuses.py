"""The pure half of webhooks: signatures, the shapes read, and the order statuses move in."""

from __future__ import annotations

import pytest

from devtools.webhooks import inbound_body, status_body
from worker.delivery.window import WINDOW_SECONDS, window_open
from worker.statuses.events import DeliveryStatus, Source, TemplateUpdate, advances, parse
from worker.statuses.signature import sign, verify

BODY = b'{"object": "whatsapp_business_account"}'
S = DeliveryStatus


@pytest.mark.parametrize(
    ("header", "secrets", "ok"),
    [
        (sign(BODY, b"new"), [b"new"], True),
        (sign(BODY, b"old"), [b"new", b"old"], True),  # rotation: both accepted meanwhile
        (sign(BODY, b"gone"), [b"new", b"old"], False),
        (sign(BODY + b" ", b"new"), [b"new"], False),  # the body changed
        (sign(BODY, b"new").removeprefix("sha256="), [b"new"], False),
        (sign(BODY, b"new").upper(), [b"new"], False),
        ("", [b"new"], False),
        (None, [b"new"], False),
        (sign(BODY, b""), [], False),  # no secret configured: nothing is accepted
    ],
)
def test_signatures(header: str | None, secrets: list[bytes], ok: bool) -> None:
    assert verify(BODY, header, secrets) is ok


@pytest.mark.parametrize(
    ("current", "new", "moves"),
    [
        (None, S.SENT, True),
        (S.ACCEPTED, S.SENT, True),
        (S.SENT, S.DELIVERED, True),
        (S.DELIVERED, S.READ, True),
        (S.SENT, S.SENT, False),  # a replay
        (S.READ, S.DELIVERED, False),  # a `delivered` after its `read`
        (S.READ, S.SENT, False),
        (S.SENT, S.FAILED, True),
        (S.FAILED, S.SENT, False),
        (S.DELIVERED, S.FAILED, False),  # it reached one device: delivered stands
        (S.FAILED, S.DELIVERED, True),
    ],
)
def test_statuses_only_move_forward(current: DeliveryStatus | None, new: DeliveryStatus, moves: bool) -> None:
    assert advances(current, new) is moves


def test_meta_statuses_and_failures() -> None:
    error = {"code": 131026, "title": "Message undeliverable", "message": "undeliverable", "details": "d"}
    body = status_body("PNID", "wamid.A", "failed", "+919999595313", at=1700000000, error=error)
    body["entry"][0]["changes"][0]["value"]["statuses"].append(
        {"id": "wamid.B", "status": "read", "timestamp": "1700000001", "recipient_id": "919999595313"}
    )
    parsed = parse(body, now=0)
    assert parsed.source is Source.META and not parsed.messages
    first, second = parsed.statuses
    assert (first.wamid, first.status, first.timestamp, first.phone_number_id) == (
        "wamid.A",
        S.FAILED,
        1700000000,
        "PNID",
    )
    assert first.error == error
    assert (second.status, second.error, second.recipient_id) == (S.READ, None, "919999595313")


def test_meta_inbound_message_with_its_contact_and_reply_context() -> None:
    body = inbound_body("PNID", "wamid.IN", "+919999595313", "hi", at=1700000000, name="Asha")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["context"] = {"id": "wamid.OUT"}
    (message,) = parse(body, now=0).messages
    assert (message.wamid, message.wa_id, message.type, message.profile_name) == (
        "wamid.IN",
        "919999595313",
        "text",
        "Asha",
    )
    assert message.context == {"id": "wamid.OUT"} and message.message["text"] == {"body": "hi"}


def test_interakt_events() -> None:
    customer = {"country_code": "+91", "phone_number": "9999595313", "traits": {"name": "Asha"}}
    failed = {
        "type": "message_api_failed",
        "data": {
            "customer": customer,
            "message": {
                "id": "m-1",
                "received_at_utc": "2026-11-25T10:00:00Z",
                "channel_failure_reason": "x",
            },
        },
    }
    (status,) = parse(failed, now=0).statuses
    assert (status.wamid, status.status, status.recipient_id) == ("m-1", S.FAILED, "919999595313")
    assert status.error and status.error["message"] == "x" and status.timestamp == 1795600800
    received = {
        "type": "message_received",
        "data": {"customer": customer, "message": {"id": "m-2", "message_content_type": "Text"}},
    }
    (message,) = parse(received, now=5).messages
    assert (message.wa_id, message.type, message.profile_name, message.timestamp) == (
        "919999595313",
        "text",
        "Asha",
        5,
    )


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "text",
        {"object": "page", "entry": []},
        {"type": "message_api_clicked", "data": {}},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "account_update"}]}]},
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"value": {"statuses": [{"id": 1}]}}]}],
        },
    ],
)
def test_shapes_without_events(doc: object) -> None:
    assert parse(doc, now=0).events == 0


def test_the_customer_window_is_24_hours() -> None:
    assert not window_open(None, 1000.0)
    assert window_open(1000.0, 1000.0 + WINDOW_SECONDS - 1)
    assert not window_open(1000.0, 1000.0 + WINDOW_SECONDS)


def test_a_template_status_update_names_the_template_to_resync() -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba-1234",
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {
                            "event": "PAUSED",
                            "message_template_id": 123,
                            "message_template_name": "order_update",
                            "message_template_language": "en_US",
                            "reason": "LOW_QUALITY",
                        },
                    }
                ],
            }
        ],
    }
    parsed = parse(body, 0.0)
    assert parsed.source is Source.META and parsed.events == 1
    assert parsed.templates == [TemplateUpdate("waba-1234", "order_update")]
    assert parsed.statuses == [] and parsed.messages == []
