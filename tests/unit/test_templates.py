"""A template intent against its synced template: each mismatch names the component, the index, and
the expected and given counts; a fitting intent passes."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.sandbox import EXAMPLE_TEMPLATES
from tests.spec_examples import TO
from worker.delivery.intents import Template, parse_intent
from worker.delivery.templates import SyncedTemplate, check_template, placeholders

SYNCED = {t["name"]: SyncedTemplate.model_validate(t) for t in EXAMPLE_TEMPLATES}
IMAGE = {"type": "image", "image": {"link": "https://example.com/r.png"}}


def text(*values: str, name: str | None = None) -> list[dict[str, Any]]:
    return [{"type": "text", "text": v, **({"parameter_name": name} if name else {})} for v in values]


def template(name: str, *components: dict[str, Any], language: str = "en_US") -> Template:
    intent = {"name": name, "language": {"code": language}, "components": list(components) or None}
    parsed = parse_intent({"to": TO, "type": "template", "template": intent}).template
    assert parsed is not None
    return parsed


def problems(name: str, *components: dict[str, Any], language: str = "en_US") -> list[tuple[str, str]]:
    return check_template(template(name, *components, language=language), SYNCED.get(name))


RECEIPT_OK = (
    {"type": "header", "parameters": [IMAGE]},
    {"type": "body", "parameters": text("Asha", "A-42")},
    {"type": "button", "sub_type": "url", "index": 0, "parameters": text("A-42")},
)


def test_a_fitting_intent_passes() -> None:
    assert problems("hello_world") == []
    assert problems("order_update", {"type": "body", "parameters": text("Asha")}) == []
    assert problems("order_receipt", *RECEIPT_OK) == []
    quick = {
        "type": "button",
        "sub_type": "quick_reply",
        "index": "1",
        "parameters": [{"type": "payload", "payload": "h"}],
    }
    assert problems("order_receipt", *RECEIPT_OK, quick) == []


def test_body_count_mismatch_names_component_index_expected_and_given() -> None:
    assert problems("order_update", {"type": "body", "parameters": text("Asha", "extra")}) == [
        ("template.components.0", "body: expected 1 parameter ({{1}}), given 2")
    ]
    assert problems("order_update") == [
        ("template.components", "body: expected 1 parameter ({{1}}), given 0")
    ]
    receipt = problems(
        "order_receipt", RECEIPT_OK[0], {"type": "body", "parameters": text("Asha")}, RECEIPT_OK[2]
    )
    assert receipt == [("template.components.1", "body: expected 2 parameters ({{1}}, {{2}}), given 1")]


def test_header_format_must_match() -> None:
    video = {"type": "video", "video": {"link": "https://example.com/v.mp4"}}
    wrong = problems("order_receipt", {"type": "header", "parameters": [video]}, *RECEIPT_OK[1:])
    assert wrong == [("template.components.0", "header: the template's header is IMAGE, given video")]
    missing = problems("order_receipt", *RECEIPT_OK[1:])
    assert missing == [("template.components", "header: expected 1 parameter (image), given 0")]
    extra = problems(
        "order_update", {"type": "header", "parameters": text("x")}, {"type": "body", "parameters": text("A")}
    )
    assert extra == [("template.components.0", "header: the template has no header")]


def test_buttons_are_checked_by_index_and_sub_type() -> None:
    wrong_sub = {"type": "button", "sub_type": "quick_reply", "index": 0, "parameters": text("x")}
    assert problems("order_receipt", *RECEIPT_OK[:2], wrong_sub) == [
        ("template.components.2", "button index 0: expected sub_type url, given quick_reply")
    ]
    beyond = {"type": "button", "sub_type": "url", "index": 5, "parameters": text("x")}
    assert ("template.components.3", "button index 5: the template has 2 buttons") in problems(
        "order_receipt", *RECEIPT_OK, beyond
    )
    assert problems("order_receipt", *RECEIPT_OK[:2]) == [
        ("template.components", "button index 0 (url): expected 1 parameter ({{1}}), given 0")
    ]


def test_named_parameters() -> None:
    ok = text("Asha", name="first_name") + text("Pune", name="city")
    assert problems("welcome_named", {"type": "body", "parameters": ok}) == []
    wrong = text("Asha", name="first_name") + text("Pune", name="town")
    [(field, reason)] = problems("welcome_named", {"type": "body", "parameters": wrong})
    assert field == "template.components.0" and "expected parameter_name ['city', 'first_name']" in reason


@pytest.mark.parametrize(
    ("name", "language", "reason"),
    [
        ("no_such", "en_US", "no template 'no_such' in language en_US"),
        ("order_update", "fr", "no template 'order_update' in language fr"),
        ("summer_sale", "en_US", "template summer_sale:en_US is PAUSED, not APPROVED"),
    ],
)
def test_missing_or_not_approved(name: str, language: str, reason: str) -> None:
    synced = SYNCED.get(name) if language == "en_US" else None
    assert check_template(template(name, language=language), synced) == [("template.name", reason)]


def test_placeholders() -> None:
    assert placeholders("Hi {{1}}, {{ 2 }} and {{1}} again, {{first_name}}") == ["1", "2", "first_name"]


OTP_SEND = (
    {"type": "body", "parameters": text("482913")},
    {"type": "button", "sub_type": "url", "index": "0", "parameters": text("482913")},
)


@pytest.mark.parametrize("name", ["login_copy_code", "login_one_tap", "login_zero_tap"])
def test_an_authentication_template_takes_its_code_in_the_body_and_the_otp_button(name: str) -> None:
    """Meta lists an OTP button as `{"type": "OTP", "otp_type": ...}`; a send fills it as a url
    button with the code (Meta's authentication-templates guide)."""
    [button] = SYNCED[name].component("BUTTONS")["buttons"]
    assert button["type"] == "OTP" and button["otp_type"] == name.removeprefix("login_").upper()
    assert problems(name, *OTP_SEND) == []
    assert problems(name, OTP_SEND[0]) == [
        ("template.components", "button index 0 (url): expected 1 parameter ({{1}}), given 0")
    ]
    copy_code = {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": text("482913")}
    assert problems(name, OTP_SEND[0], copy_code) == [
        ("template.components.1", "button index 0: expected sub_type url, given copy_code")
    ]


def synced(name: str, *components: dict[str, Any]) -> SyncedTemplate:
    return SyncedTemplate.model_validate(
        {"name": name, "language": "en_US", "status": "APPROVED", "components": list(components)}
    )


CATALOG_SYNCED = synced(
    "intro_catalog_offer",
    {"type": "BODY", "text": "Now {{1}} off"},
    {"type": "BUTTONS", "buttons": [{"type": "CATALOG", "text": "View catalog"}]},
)
ACTION = {"type": "action", "action": {"thumbnail_product_retailer_id": "2lc20305pt"}}


@pytest.mark.parametrize("sub_type", ["catalog", "CATALOG"])
def test_a_button_sub_type_in_meta_casing_fits(sub_type: str) -> None:
    sent = template(
        "intro_catalog_offer",
        {"type": "body", "parameters": text("10%")},
        {"type": "button", "sub_type": sub_type, "index": 0, "parameters": [ACTION]},
    )
    assert check_template(sent, CATALOG_SYNCED) == []


def test_a_limited_time_offer_or_carousel_needs_one_in_the_template() -> None:
    offer = {
        "type": "limited_time_offer",
        "parameters": [{"type": "limited_time_offer", "limited_time_offer": {"expiration_time_ms": 1}}],
    }
    sent = template("order_update", {"type": "body", "parameters": text("Asha")}, offer)
    assert check_template(sent, SYNCED["order_update"]) == [
        ("template.components.1", "limited_time_offer: the template has no limited_time_offer")
    ]
    with_offer = synced("order_update", {"type": "BODY", "text": "Hi {{1}}"}, {"type": "LIMITED_TIME_OFFER"})
    assert check_template(sent, with_offer) == []


def test_a_carousel_sends_as_many_cards_as_the_template_has() -> None:
    def cards(n: int) -> dict[str, Any]:
        return {
            "type": "carousel",
            "cards": [
                {"card_index": i, "components": [{"type": "header", "parameters": [IMAGE]}]} for i in range(n)
            ],
        }

    three = synced(
        "summer_carousel", {"type": "BODY", "text": "Hi"}, {"type": "CAROUSEL", "cards": [{}, {}, {}]}
    )
    assert check_template(template("summer_carousel", cards(3)), three) == []
    assert check_template(template("summer_carousel", cards(2)), three) == [
        ("template.components.0", "carousel: expected 3 cards, given 2")
    ]
