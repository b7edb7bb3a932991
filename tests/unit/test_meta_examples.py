"""Meta's own 50 request-body examples (the OpenAPI description's `messages` POST) reach the API as
written: each, its placeholders filled with real values, is enqueued as an intent, built into a
payload, and compared with the example; the payload is also checked against the file's `Message`
schema where that schema is sound."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from worker.delivery.errors import InvalidIntent
from worker.delivery.intents import normalize_phone, parse_intent, parse_read
from worker.delivery.payloads import message_payload, read_payload

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "meta" / "business-messaging-api_v23.0.yaml"
ROUTE = "/{Version}/{Phone-Number-ID}/messages"

TO = "+16505551234"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUYzMjEzNDM2RTZGQ0MzMDJBRgA="

# What the builder writes when an intent leaves it out: the API's own defaults, which some examples omit.
DEFAULTS = {"recipient_type": "individual", "type": "text"}

# Each placeholder of the examples, by its exact text, and the real value sent in its place.
FILLS: dict[str, Any] = {
    "{{Recipient-Phone-Number}}": TO,
    "{{Recipient-WA-Phone-Number}}": "16505551234",
    "{{Flow-ID}}": "1191874388643027",
    "{{Flow-Name}}": "appointment_booking",
    "<FLOW_TOKEN>": "flow-token-a1b2c3",
    "<SCREEN_ID>": "BOOKING_SCREEN",
    "<CUSTOM_KEY>": "product_name",
    "<CUSTOM_VALUE>": "Sourdough bread",
    "<TEMPLATE_NAME>": "appointment_booking",
    "template-name": "order_confirmation",
    "language-and-locale-code": "en_US",
    "text-string": "Asha",
    "<HEADER_TYPE>": "text",
    "<AUDIO_OBJECT_ID>": "1013859600285441",
    "<DOCUMENT_OBJECT_ID>": "1013859600285442",
    "<IMAGE_OBJECT_ID>": "1013859600285443",
    "<MEDIA_OBJECT_ID>": "1013859600285444",
    "<VIDEO_OBJECT_ID>": "1013859600285445",
    "<MSGID_OF_MSG_YOU_ARE_REPLYING_TO>": WAMID,
    "<MSGID_OF_PREV_MSG>": WAMID,
    "wamid.HBgLM...": WAMID,
    "<DOCUMENT_FILENAME>": "invoice-0042.pdf",
    "<DOCUMENT_CAPTION_TO_SEND>": "Your invoice",
    "<DOCUMENT_CAPTION_TEXT>": "Your invoice",
    "<DOCUMENT-CAPTION-TEXT>": "Your invoice",
    "<VIDEO_CAPTION_TEXT>": "How to bake it",
    "<TEXT_MSG_CONTENT>": "Your order has shipped",
    "text-message-content": "Your order has shipped",
    "<BODY_TEXT>": "Book your appointment",
    "<HEADER_TEXT>": "Appointments",
    "<FOOTER_TEXT>": "Reply STOP to opt out",
    "<BUTTON_TEXT>": "Choose a slot",
    "<UNIQUE_BUTTON_ID_1>": "confirm-yes",
    "<UNIQUE_BUTTON_ID_2>": "confirm-no",
    "<BUTTON_TITLE_1>": "Yes",
    "<BUTTON_TITLE_2>": "No",
    "<LIST_SECTION_1_TITLE>": "Morning",
    "<LIST_SECTION_2_TITLE>": "Afternoon",
    "<LIST_SECTION_1_ROW_1_ID>": "slot-0900",
    "<LIST_SECTION_1_ROW_2_ID>": "slot-1000",
    "<LIST_SECTION_2_ROW_1_ID>": "slot-1400",
    "<LIST_SECTION_2_ROW_2_ID>": "slot-1500",
    "<SECTION_1_ROW_1_TITLE>": "09:00",
    "<SECTION_1_ROW_2_TITLE>": "10:00",
    "<SECTION_2_ROW_1_TITLE>": "14:00",
    "<SECTION_2_ROW_2_TITLE>": "15:00",
    "<SECTION_1_ROW_1_DESC>": "With Dr Rao",
    "<SECTION_1_ROW_2_DESC>": "With Dr Rao",
    "<SECTION_2_ROW_1_DESC>": "With Dr Iyer",
    "<SECTION_2_ROW_2_DESC>": "With Dr Iyer",
    "<ID_TEST_ITEM_1>": "sku-bread-01",
    "<OPTIONAL_BODY_TEXT>": "Fresh today",
    "<OPTIONAL_FOOTER_TEXT>": "Delivered by noon",
    "<YOUR_PRODUCT1_SKU_IN_CATALOG>": "sku-bread-01",
    "<YOUR_SECOND_PRODUCT1_SKU_IN_CATALOG>": "sku-bread-02",
    "<YOUR_PRODUCT2_SKU_IN_CATALOG>": "sku-cake-01",
    "<YOUR_SECOND_PRODUCT2_SKU_IN_CATALOG>": "sku-cake-02",
    "<SECTION1_TITLE>": "Breads",
    "<SECTION2_TITLE>": "Cakes",
    "<YOUR_TEXT_HEADER_CONTENT>": "Our bakery",
    "<YOUR_TEXT_BODY_CONTENT>": "Today's bakes",
    "<YOUR_TEXT_FOOTER_CONTENT>": "Order by 11:00",
    "your-text-body-content": "Your order is ready",
    "your-text-footer-content": "Thanks for shopping with us",
    "unique-reference-id": "order-2024-0042",
    # 42 characters, over Meta's 35 for a reference_id: the order_details example's id, filled alike
    "unique-reference-id-from-order-details-msg": "order-2024-0042",
}
# A media link, by the kind of media object holding it (its extension is one Meta takes for the kind).
LINKS = {
    "audio": "https://cdn.example.com/media/voice-note.ogg",
    "document": "https://cdn.example.com/media/invoice-0042.pdf",
    "image": "https://cdn.example.com/media/bread.jpg",
    "sticker": "https://cdn.example.com/media/smile.webp",
    "video": "https://cdn.example.com/media/baking.mp4",
}


@functools.cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC.read_text())


def examples() -> dict[str, Any]:
    body = spec()["paths"][ROUTE]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in body["examples"].items()}


def fill(value: Any, kind: str = "") -> Any:
    """`value` with each placeholder replaced; `kind` is the key holding it (a link's media kind)."""
    if isinstance(value, dict):
        return {FILLS.get(k, k): fill(v, kind if k == "link" else k) for k, v in value.items()}
    if isinstance(value, str) and "http(s)://" in value:
        return LINKS[kind]
    if isinstance(value, list):
        return [fill(item, kind) for item in value]
    return FILLS.get(value, value) if isinstance(value, str) else value


# JSON Schema's allOf checks `additionalProperties` in each branch against that branch's properties
# alone, so the file's "{Base properties} allOf {additionalProperties: false, <kind>}" refuses
# messaging_product, to and every other base property of every message. Read as meant: the branch's
# rule is dropped and the whole message refuses what neither part names (unevaluatedProperties).
MESSAGE_KINDS = ["Text", "Audio", "Document", "Image", "Location", "Video", "Sticker", "Reaction"]
MESSAGE_KINDS += ["Interactive", "Contacts"]  # TemplateMessage has no additionalProperties
ALL_OF = [(f"/components/schemas/{k}Message/allOf/1/additionalProperties", None) for k in MESSAGE_KINDS]
ALL_OF += [(f"/components/schemas/{k}Message/unevaluatedProperties", False) for k in MESSAGE_KINDS]
LOCATION = "/components/schemas/LocationMessage/allOf/1/properties/location/properties"

BUTTONS = ["quick_reply", "url", "catalog", "copy_code", "mpm", "flow"]
INTERACTIVE = ["button", "call_permission_request", "catalog_message", "list", "product", "product_list"]
INTERACTIVE += ["flow", "order_details", "order_status"]
ACTIONS = {"enum": ["review_and_pay", "review_order"]}

# Each other rule of the file's schema that contradicts Meta's prose docs and its own examples, skipped:
# (JSON pointer into the document, what takes its place (None: nothing)).
SCHEMA_FIXES: list[tuple[str, Any]] = [
    *ALL_OF,
    # latitude and longitude are numbers in the prose and in every example; the schema says strings
    (f"{LOCATION}/latitude/type", "number"),
    (f"{LOCATION}/longitude/type", "number"),
    # `policy` is optional in the prose ("deterministic", its one value) and absent from most examples
    ("/components/schemas/LanguageObject/required", ["code"]),
    # a button's index is 0-9, a string or an integer in the examples; "^[2-6, 11-14]$" is a garbled
    # character class that even "0" fails
    ("/components/schemas/TemplateComponent/properties/index/type", ["string", "integer"]),
    ("/components/schemas/TemplateComponent/properties/index/pattern", "^[0-9]$"),
    # the button kinds of the prose (flow, copy_code, mpm, ...), in Meta's casing too ("CATALOG" in
    # its catalog example); the schema lists three, lower case
    ("/components/schemas/TemplateComponent/properties/sub_type/enum", None),
    ("/components/schemas/TemplateComponent/properties/sub_type/pattern", f"(?i)^({'|'.join(BUTTONS)})$"),
    # the interactive kinds of the prose that the schema leaves out, and their actions (by name)
    ("/components/schemas/InteractiveObject/properties/type/enum", None),
    ("/components/schemas/InteractiveObject/properties/type/pattern", f"^({'|'.join(INTERACTIVE)})$"),
    ("/components/schemas/ActionObject/oneOf/-", {"required": ["name"], "properties": {"name": ACTIONS}}),
]


def patched(document: Any, fixes: list[tuple[str, Any]]) -> Any:
    """A copy of `document` with each fix applied: a pointer's last part set, deleted for None, or
    appended to for "-" (as JSON Patch has it)."""
    fixed = copy.deepcopy(document)
    for pointer, value in fixes:
        *parents, last = [part for part in pointer.split("/") if part]
        node = functools.reduce(
            lambda obj, key: obj[int(key) if isinstance(obj, list) else key], parents, fixed
        )
        if last == "-":
            node.append(value)
        elif value is None:
            node.pop(last)
        else:
            node[last] = value
    return fixed


@functools.cache
def validator(component: str) -> jsonschema.Draft202012Validator:
    document = patched(spec(), SCHEMA_FIXES)
    registry = Registry().with_resource(
        "urn:meta", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:meta#/components/schemas/{component}"}, registry=registry
    )


def schema_errors(payload: dict[str, Any], component: str) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator(component).iter_errors(payload)]


def message_schema(payload: dict[str, Any]) -> str:
    """The `Message` branch its discriminator names for the payload's type (the oneOf's own errors
    say only that no branch fits)."""
    mapping = spec()["components"]["schemas"]["Message"]["discriminator"]["mapping"]
    return str(mapping[payload["type"]]).rsplit("/", 1)[-1]


def test_there_are_fifty_examples_and_every_placeholder_is_filled() -> None:
    assert len(examples()) == 50
    filled = json.dumps([fill(example) for example in examples().values()])
    assert not re.findall(r"<[A-Z]|\{\{|http\(s\)|language-and-locale|template-name", filled)


# Two examples the Cloud API itself would refuse, refused at enqueue with the field and the reason.
ERRATA: dict[str, tuple[str, str]] = {
    # No `type`, so the API takes it as text (its default), yet it carries a list and no text.
    "Send Reply to List Message": ("intent", "no 'type' means text"),
    # A quick-reply button's parameter written `{"type": "text", "text": true}`: Meta's own schema
    # (ButtonTextParameter, TextParameter) has text a string.
    "Send Sample Issue Resolution Template": (
        "template.components.1.parameters.0.text",
        "Input should be a valid string",
    ),
}


def test_the_fixed_schema_still_refuses() -> None:
    """The skipped rules leave the schema strict: an unknown field and a wrong type are refused."""
    text = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO, "type": "text"}
    assert schema_errors({**text, "text": {"body": "hi"}}, "TextMessage") == []
    assert schema_errors({**text, "text": {"body": "hi"}, "txt": {}}, "TextMessage")
    assert schema_errors({**text, "text": {"body": 7}}, "TextMessage")
    location = {**text, "type": "location", "location": {"latitude": "north", "longitude": 0}}
    assert schema_errors(location, "LocationMessage")


@pytest.mark.parametrize("name", sorted(set(examples()) - set(ERRATA)))
def test_example_reaches_the_api_as_written(name: str) -> None:
    """The example, copied whole (messaging_product and all), is the payload; the builder adds
    only the API's defaults the example leaves out, and `to` in E.164."""
    example = fill(examples()[name])
    if example.get("status") == "read":
        # what mark_read(message_id, typing_indicator={"type": "text"}) enqueues
        receipt = {k: v for k, v in example.items() if k not in ("messaging_product", "status")}
        payload = read_payload(parse_read(receipt))
        assert payload == example
        assert schema_errors(payload, "MarkMessageRequestPayload") == []
        return
    payload = message_payload(parse_intent(example))
    assert payload == {**DEFAULTS, **example, "to": normalize_phone(example["to"])}
    assert schema_errors(payload, message_schema(payload)) == []


@pytest.mark.parametrize("name", sorted(ERRATA))
def test_an_example_the_api_would_refuse_is_refused_at_enqueue(name: str) -> None:
    field, reason = ERRATA[name]
    with pytest.raises(InvalidIntent) as info:
        parse_intent(fill(examples()[name]))
    assert any(e["field"] == field and reason in e["reason"] for e in info.value.errors), info.value.errors
