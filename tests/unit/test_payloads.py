"""Every message type turns into exactly the body the spec shows."""

import pytest

from tests import spec_examples as spec
from worker.delivery.intents import parse_intent, parse_read
from worker.delivery.payloads import message_payload, read_payload

SPEC_BODIES = [spec.TEXT, spec.IMAGE_ID, spec.CATALOG, spec.PRODUCT, spec.PRODUCT_LIST, spec.REPLY]
SPEC_BODIES += [spec.message(t, c) for t, c in spec.OTHERS.items()]
SPEC_BODIES += [spec.message("interactive", spec.LIST)]


@pytest.mark.parametrize("body", SPEC_BODIES, ids=lambda b: b["type"] + ":" + str(b[b["type"]])[:30])
def test_payload_is_the_spec_body(body: dict) -> None:
    assert message_payload(parse_intent(spec.intent_of(body))) == body


def test_wa_id_without_plus_is_sent_in_e164() -> None:
    payload = message_payload(parse_intent({"to": "919999595313", "type": "text", "text": {"body": "hi"}}))
    assert payload["to"] == "+919999595313"
    assert "preview_url" not in payload["text"]  # only what the caller gave


def test_recipient_type_defaults_to_individual_and_key_is_not_sent() -> None:
    payload = message_payload(
        parse_intent({"to": spec.TO, "type": "text", "text": {"body": "x"}, "idempotency_key": "order-1"})
    )
    assert payload["recipient_type"] == "individual"
    assert "idempotency_key" not in payload


def test_mark_read_body() -> None:
    assert read_payload(parse_read({"message_id": "wamid.INCOMING"})) == spec.READ


@pytest.mark.parametrize("content", spec.INTERACTIVE_KINDS, ids=lambda c: c["type"])
def test_each_interactive_kind_is_sent_as_written(content: dict) -> None:
    body = spec.message("interactive", content)
    assert message_payload(parse_intent(spec.intent_of(body))) == body


@pytest.mark.parametrize(
    "template", [spec.LIMITED_TIME_OFFER, spec.CAROUSEL_TEMPLATE], ids=lambda t: t["name"]
)
def test_limited_time_offer_and_carousel_templates_are_sent_as_written(template: dict) -> None:
    body = spec.message("template", template)
    assert message_payload(parse_intent(spec.intent_of(body))) == body


def test_an_intent_copied_whole_from_meta_and_one_without_type() -> None:
    whole = {**spec.TEXT, "biz_opaque_callback_data": "campaign-7/row-12"}
    assert message_payload(parse_intent(whole)) == whole  # messaging_product and the callback data kept
    untyped = message_payload(parse_intent({"to": spec.TO, "text": {"body": "hi"}}))
    assert untyped["type"] == "text" and untyped["text"] == {"body": "hi"}


def test_a_button_sub_type_is_sent_in_the_casing_given() -> None:
    button = {"type": "button", "sub_type": "CATALOG", "index": 0}
    template = {"name": "intro_catalog_offer", "language": {"code": "en_US"}, "components": [button]}
    payload = message_payload(parse_intent({"to": spec.TO, "type": "template", "template": template}))
    assert payload["template"]["components"][0]["sub_type"] == "CATALOG"


def test_mark_read_with_a_typing_indicator() -> None:
    receipt = parse_read({"message_id": "wamid.INCOMING", "typing_indicator": {"type": "text"}})
    assert read_payload(receipt) == {**spec.READ, "typing_indicator": {"type": "text"}}
