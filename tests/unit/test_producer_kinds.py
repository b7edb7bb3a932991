"""Each producer helper for the kinds of issue 25 builds an intent that parses (nothing is
enqueued: apply_async is replaced by a recorder)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import producers
from tests.spec_examples import TO
from worker.delivery.intents import MessageIntent, parse_intent, parse_read

ITEMS = [
    {
        "retailer_id": "sku-1",
        "name": "Sourdough",
        "amount": {"value": 25000, "offset": 100},
        "sale_amount": {"value": 20000, "offset": 100},
        "quantity": 2,
    },
    {"retailer_id": "sku-2", "name": "Jam", "amount": {"value": 10000, "offset": 100}, "quantity": 1},
]
GATEWAY = [{"type": "payment_gateway", "payment_gateway": {"type": "razorpay", "configuration_name": "rzp"}}]
CARDS = [
    {"image": "https://cdn.example.com/a.png", "display_text": "Shop", "url": "https://e.com/a", "body": "A"},
    {"image": "https://cdn.example.com/b.png", "display_text": "Shop", "url": "https://e.com/b"},
]


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(producers.send_message, "apply_async", lambda kwargs, **_: sent.append(kwargs))
    return sent


CALLS = {
    "send_order_details": lambda: producers.send_order_details(
        TO,
        "Your order",
        "order-42",
        ITEMS,
        GATEWAY,
        tax=2500,
        shipping=1500,
        discount=2000,
        expiration=int(time.time()) + 3600,
    ),
    "send_order_status": lambda: producers.send_order_status(TO, "order-42", "shipped", "On its way"),
    "send_flow": lambda: producers.send_flow(
        TO, "Book a table", "Book", flow_id="1191874388643027", screen="BOOKING", data={"size": 2}
    ),
    "send_cta_url": lambda: producers.send_cta_url(TO, "Track it", "Track", "https://e.com/t/42"),
    "send_location_request": lambda: producers.send_location_request(TO, "Where to?"),
    "send_address_request": lambda: producers.send_address_request(
        TO, "Your address", values={"name": "Asha"}
    ),
    "send_carousel": lambda: producers.send_carousel(TO, "Offers", CARDS),
    "send_otp": lambda: producers.send_otp(TO, "login_copy_code", "482913"),
}


@pytest.mark.parametrize("helper", sorted(CALLS))
def test_the_helper_builds_an_intent_that_parses(helper: str, enqueued: list[dict[str, Any]]) -> None:
    CALLS[helper]()
    [intent] = enqueued
    assert isinstance(parse_intent(intent), MessageIntent)
    assert helper in producers.__all__


def test_order_details_adds_up(enqueued: list[dict[str, Any]]) -> None:
    CALLS["send_order_details"]()
    parameters = enqueued[0]["interactive"]["action"]["parameters"]
    assert parameters["order"]["subtotal"] == {"value": 50000, "offset": 100}  # sale prices x quantity
    assert parameters["total_amount"] == {"value": 52000, "offset": 100}  # + tax + shipping - discount


def test_mark_read_can_show_the_typing_indicator(monkeypatch: pytest.MonkeyPatch) -> None:
    receipts: list[dict[str, Any]] = []
    monkeypatch.setattr(producers._mark_read, "apply_async", lambda kwargs, **_: receipts.append(kwargs))
    producers.mark_read("wamid.IN", typing=True)
    producers.mark_read("wamid.IN2")
    assert [parse_read(r).model_dump(exclude_none=True) for r in receipts] == [
        {"message_id": "wamid.IN", "typing_indicator": {"type": "text"}},
        {"message_id": "wamid.IN2"},
    ]
