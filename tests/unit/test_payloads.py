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
