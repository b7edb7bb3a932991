"""The rules of the message kinds beyond the seed (issue 25): each bad intent is refused at enqueue,
naming the field and the reason. The valid shapes are in tests/spec_examples.py."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from tests import spec_examples as spec
from worker.delivery.errors import InvalidIntent
from worker.delivery.intents import parse_intent, parse_read


def refusals(intent: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidIntent) as info:
        parse_intent(intent)
    return [(e["field"], e["reason"]) for e in info.value.errors]


def refused(intent: dict[str, Any], field: str, reason: str) -> None:
    """`intent` is refused for `field`, with a reason containing `reason`."""
    found = refusals(intent)
    assert any(f == field and reason in r for f, r in found), found


def interactive(content: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An interactive intent of `content` with `changes` set at dotted paths (None deletes)."""
    content = copy.deepcopy(content)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = content
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return {"to": spec.TO, "type": "interactive", "interactive": content}


def template(*components: dict[str, Any]) -> dict[str, Any]:
    body = {"name": "t", "language": {"code": "en_US"}, "components": list(components)}
    return {"to": spec.TO, "type": "template", "template": body}


def test_every_new_kind_parses() -> None:
    for content in spec.INTERACTIVE_KINDS:
        parse_intent(interactive(content))
    parse_intent(template(*spec.LIMITED_TIME_OFFER["components"]))
    parse_intent(template(*spec.CAROUSEL_TEMPLATE["components"]))


# --- the message as a whole ------------------------------------------------------------------------


def test_messaging_product_is_whatsapp_or_nothing() -> None:
    parse_intent({**spec.TEXT})
    refused({**spec.TEXT, "messaging_product": "messenger"}, "messaging_product", "'whatsapp'")


def test_no_type_is_text_and_an_untyped_other_object_is_refused() -> None:
    assert parse_intent({"to": spec.TO, "text": {"body": "hi"}}).type == "text"
    refused({"to": spec.TO, "image": {"id": "1"}}, "intent", "no 'type' means text")


def test_biz_opaque_callback_data_is_at_most_512_characters() -> None:
    parse_intent({**spec.TEXT, "biz_opaque_callback_data": "x" * 512})
    refused({**spec.TEXT, "biz_opaque_callback_data": "x" * 513}, "biz_opaque_callback_data", "512")


def test_typing_indicator_is_text() -> None:
    parse_read({"message_id": "wamid.X", "typing_indicator": {"type": "text"}})
    with pytest.raises(InvalidIntent) as info:
        parse_read({"message_id": "wamid.X", "typing_indicator": {"type": "audio"}})
    assert [e["field"] for e in info.value.errors] == ["typing_indicator.type"]


# --- flows -----------------------------------------------------------------------------------------

FLOW = "interactive.flow.action.parameters"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"action__parameters__flow_name": "booking"}, FLOW, "exactly one of 'flow_id' or 'flow_name'"),
        ({"action__parameters__flow_id": None}, FLOW, "exactly one of 'flow_id' or 'flow_name'"),
        ({"action__parameters__flow_message_version": "2"}, f"{FLOW}.flow_message_version", "'3'"),
        ({"action__parameters__flow_cta": "x" * 31}, f"{FLOW}.flow_cta", "30"),
        ({"action__parameters__mode": "live"}, f"{FLOW}.mode", "'draft' or 'published'"),
        ({"action__parameters__flow_action": "data_exchange"}, FLOW, "data_exchange takes no"),
        ({"action__parameters__flow_action_payload__data": {}}, f"{FLOW}.flow_action_payload.data", "1 item"),
        ({"action__parameters__flow_action_payload__screen": None}, f"{FLOW}.flow_action_payload.screen", ""),
        ({"body": None}, "interactive.flow.body", "required"),
    ],
)
def test_flow_rules(changes: dict[str, Any], field: str, reason: str) -> None:
    refused(interactive(spec.FLOW, **changes), field, reason)


def test_a_data_exchange_flow_has_no_payload() -> None:
    parse_intent(
        interactive(
            spec.FLOW,
            action__parameters__flow_action="data_exchange",
            action__parameters__flow_action_payload=None,
        )
    )


# --- cta_url, location request, address, carousel -----------------------------------------------


@pytest.mark.parametrize(
    ("content", "changes", "field", "reason"),
    [
        (
            spec.CTA_URL,
            {"action__parameters__display_text": "x" * 21},
            "cta_url.action.parameters.display_text",
            "20",
        ),
        (
            spec.CTA_URL,
            {"action__parameters__url": "ftp://e.com/a"},
            "cta_url.action.parameters.url",
            "http(s)",
        ),
        (
            spec.LOCATION_REQUEST,
            {"action__name": "location"},
            "location_request_message.action.name",
            "send_location",
        ),
        (spec.LOCATION_REQUEST, {"body": None}, "location_request_message.body", "required"),
        (
            spec.ADDRESS,
            {"action__parameters__country": "US"},
            "address_message.action.parameters.country",
            "'IN'",
        ),
        (spec.CAROUSEL, {"action__cards": [spec.card(0)]}, "carousel.action.cards", "at least 2"),
        (
            spec.CAROUSEL,
            {"action__cards": [spec.card(i) for i in range(11)]},
            "carousel.action.cards",
            "at most 10",
        ),
        (
            spec.CAROUSEL,
            {"action__cards": [spec.card(0), spec.card(1, "video")]},
            "carousel.action",
            "same type",
        ),
        (spec.CAROUSEL, {"action__cards": [spec.card(0), spec.card(0)]}, "carousel.action", "own card_index"),
    ],
)
def test_interactive_kind_rules(
    content: dict[str, Any], changes: dict[str, Any], field: str, reason: str
) -> None:
    refused(interactive(content, **changes), f"interactive.{field}", reason)


# --- orders ----------------------------------------------------------------------------------------

ORDER = "interactive.order_details.action.parameters"
P = "action__parameters__"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({f"{P}reference_id": "x" * 36}, f"{ORDER}.reference_id", "35"),
        ({f"{P}reference_id": "order 42/a"}, f"{ORDER}.reference_id", "pattern"),
        ({f"{P}type": "services"}, f"{ORDER}.type", "'digital-goods' or 'physical-goods'"),
        ({f"{P}currency": "USD"}, f"{ORDER}.currency", "'INR'"),
        ({f"{P}total_amount__offset": 1000}, f"{ORDER}.total_amount.offset", "100"),
        ({f"{P}total_amount__value": 52001}, ORDER, "is not subtotal + tax + shipping - discount (52000)"),
        ({f"{P}order__subtotal__value": 55000}, f"{ORDER}.order", "price x quantity summed (50000)"),
        ({f"{P}order__status": "processing"}, f"{ORDER}.order.status", "'pending'"),
        (
            {f"{P}order__items__0__quantity": 0},
            f"{ORDER}.order.items.0.quantity",
            "greater than or equal to 1",
        ),
        (
            {f"{P}order__items__0__sale_amount": {"value": 25000, "offset": 100}},
            f"{ORDER}.order.items.0",
            "sale_amount must be less than amount",
        ),
        ({f"{P}order__items__0__name": "x" * 61}, f"{ORDER}.order.items.0.name", "60"),
        ({f"{P}order__items": []}, f"{ORDER}.order.items", "at least 1"),
        ({f"{P}payment_settings": None}, ORDER, "needs payment_settings"),
        ({f"{P}payment_type": "upi", f"{P}payment_configuration": "upi-cfg"}, ORDER, "not both"),
        (
            {
                f"{P}payment_settings": [
                    {"type": "payment_link", "payment_gateway": {"type": "payu", "configuration_name": "c"}}
                ]
            },
            f"{ORDER}.payment_settings.0",
            "a 'payment_link' setting carries a 'payment_link' object",
        ),
        (
            {f"{P}order__expiration": {"timestamp": str(int(time.time()) + 200)}},
            f"{ORDER}.order.expiration",
            "at least 300 seconds from now",
        ),
    ],
)
def test_order_details_rules(changes: dict[str, Any], field: str, reason: str) -> None:
    refused(interactive(spec.ORDER_DETAILS, **changes), field, reason)


def test_order_details_with_the_older_upi_pair_and_an_expiry() -> None:
    expiry = {"timestamp": str(int(time.time()) + 3600), "description": "Pay within an hour"}
    older = {f"{P}payment_settings": None, f"{P}payment_type": "upi", f"{P}payment_configuration": "upi-cfg"}
    parse_intent(interactive(spec.ORDER_DETAILS, **older, **{f"{P}order__expiration": expiry}))


def test_order_status_vocabulary() -> None:
    for status in ["pending", "processing", "partially-shipped", "shipped", "completed", "canceled"]:
        parse_intent(interactive(spec.ORDER_STATUS, **{f"{P}order__status": status}))
    refused(
        interactive(spec.ORDER_STATUS, **{f"{P}order__status": "lost"}),
        "interactive.order_status.action.parameters.order.status",
        "'partially-shipped'",
    )
    refused(
        interactive(spec.ORDER_STATUS, **{f"{P}reference_id": "x" * 36}),
        "interactive.order_status.action.parameters.reference_id",
        "35",
    )


# --- templates -------------------------------------------------------------------------------------


def date_time(**parts: Any) -> dict[str, Any]:
    return {
        "type": "body",
        "parameters": [{"type": "date_time", "date_time": {"fallback_value": "May 1", **parts}}],
    }


def test_date_time_as_meta_writes_it() -> None:
    parse_intent(
        template(date_time(calendar="GREGORIAN", year=2026, month=5, day_of_month=1, hour=9, minute=30))
    )
    refused(template(date_time(month=13)), "template.components.0.parameters.0.date_time.month", "12")
    refused(
        template(date_time(calendar="LUNAR")), "template.components.0.parameters.0.date_time.calendar", ""
    )


def button(sub_type: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "button", "sub_type": sub_type, "index": 0, "parameters": list(parameters)}


COUPON = {"type": "coupon_code", "coupon_code": "FLASH25"}
ACTION = {"type": "action", "action": {"thumbnail_product_retailer_id": "sku-1"}}


def test_button_sub_type_in_either_casing() -> None:
    parsed = parse_intent(template(button("CATALOG", ACTION))).template
    assert parsed is not None and parsed.components is not None
    assert parsed.components[0].sub_type == "CATALOG" and parsed.components[0].button == "catalog"
    refused(template(button("call_me")), "template.components.0.sub_type", "quick_reply, url")


def test_coupon_code_and_action_parameters() -> None:
    parse_intent(template(button("copy_code", COUPON)))
    parse_intent(
        template(
            button("flow", {"type": "action", "action": {"flow_token": "t", "flow_action_data": {"a": 1}}})
        )
    )
    long_code = {"type": "coupon_code", "coupon_code": "x" * 16}
    refused(template(button("copy_code", long_code)), "template.components.0.parameters.0.coupon_code", "15")
    refused(
        template(button("url", COUPON)),
        "template.components.0",
        "'coupon_code' parameter belongs in copy_code",
    )
    refused(template(button("quick_reply", ACTION)), "template.components.0", "'action' parameter belongs in")
    refused(template({"type": "body", "parameters": [COUPON]}), "template.components.0", "not body")


def test_limited_time_offer_and_carousel_components() -> None:
    offer = spec.LIMITED_TIME_OFFER["components"][1]
    refused(
        template({**offer, "parameters": [{"type": "text", "text": "x"}]}),
        "template.components.0",
        "takes only its offer",
    )
    carousel = spec.CAROUSEL_TEMPLATE["components"][1]
    refused(
        template({**carousel, "cards": carousel["cards"][:1]}), "template.components.0.cards", "at least 2"
    )
    refused(template({"type": "carousel"}), "template.components.0", "only that, carries 'cards'")
    refused(template({"type": "body", "cards": carousel["cards"]}), "template.components.0", "only that")
