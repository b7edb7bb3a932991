"""Bad intents are refused with the field and the reason; the API's documented limits hold."""

from typing import Any

import pytest

from tests.spec_examples import TO
from worker.delivery.errors import InvalidIntent
from worker.delivery.intents import parse_intent


def refuse(**intent: Any) -> InvalidIntent:
    with pytest.raises(InvalidIntent) as info:
        parse_intent(intent)
    return info.value


def fields(err: InvalidIntent) -> list[str]:
    return [e["field"] for e in err.errors]


def buttons(n: int, title: str = "t") -> dict:
    return {
        "buttons": [{"type": "reply", "reply": {"id": f"b{i}", "title": f"{title}{i}"}} for i in range(n)]
    }


def test_phone_numbers_are_checked_by_libphonenumber() -> None:
    assert parse_intent({"to": "+1 650 555 1234", "type": "text", "text": {"body": "x"}}).to == "+16505551234"
    for bad in ["12", "+15551234567", "not a number", "+91 99"]:
        err = refuse(to=bad, type="text", text={"body": "x"})
        assert fields(err) == ["to"], bad


def test_text_limits() -> None:
    parse_intent({"to": TO, "type": "text", "text": {"body": "x" * 4096}})
    err = refuse(to=TO, type="text", text={"body": "x" * 4097})
    assert fields(err) == ["text.body"] and "4096" in str(err)
    assert fields(refuse(to=TO, type="text", text={"body": ""})) == ["text.body"]


def test_type_needs_its_object_and_no_other() -> None:
    assert "needs a 'text' object" in str(refuse(to=TO, type="text"))
    assert "cannot also carry 'image'" in str(
        refuse(to=TO, type="text", text={"body": "x"}, image={"id": "1"})
    )
    assert fields(refuse(to=TO, type="fax", text={"body": "x"})) == ["type"]


def test_unknown_fields_are_refused() -> None:
    err = refuse(to=TO, type="text", text={"bdy": "x"})
    assert "text.bdy" in fields(err) and "text.body" in fields(err)
    assert "access_token" in fields(refuse(to=TO, type="text", text={"body": "x"}, access_token="nope"))


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document", "sticker"])
def test_media_needs_exactly_one_of_id_and_link(kind: str) -> None:
    assert "exactly one of 'id' or 'link'" in str(refuse(to=TO, type=kind, **{kind: {}}))
    both = {"id": "1", "link": "https://example.com/file"}
    assert "exactly one of 'id' or 'link'" in str(refuse(to=TO, type=kind, **{kind: both}))


def test_media_link_rules() -> None:
    assert "http(s)" in str(refuse(to=TO, type="image", image={"link": "ftp://example.com/a.png"}))
    assert ".gif is not a supported image" in str(
        refuse(to=TO, type="image", image={"link": "https://e.com/a.gif"})
    )
    assert ".png is not a supported sticker" in str(
        refuse(to=TO, type="sticker", sticker={"link": "https://e.com/s.png"})
    )
    parse_intent(
        {"to": TO, "type": "image", "image": {"link": "https://e.com/render?id=7"}}
    )  # unknown ext: Meta decides
    assert fields(refuse(to=TO, type="audio", audio={"id": "1", "caption": "no captions on audio"})) == [
        "audio.caption"
    ]
    assert fields(refuse(to=TO, type="image", image={"id": "1", "caption": "c" * 1025})) == ["image.caption"]


def test_reply_buttons_limits() -> None:
    ok = {"type": "button", "body": {"text": "b"}, "action": buttons(3)}
    parse_intent({"to": TO, "type": "interactive", "interactive": ok})
    err = refuse(to=TO, type="interactive", interactive={**ok, "action": buttons(4)})
    assert fields(err) == ["interactive.button.action.buttons"] and "3" in str(err)
    err = refuse(to=TO, type="interactive", interactive={**ok, "action": buttons(1, title="x" * 21)})
    assert fields(err) == ["interactive.button.action.buttons.0.reply.title"]
    dup = {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "Same"}}] * 2}
    assert "unique" in str(refuse(to=TO, type="interactive", interactive={**ok, "action": dup}))


def test_interactive_body_header_footer_limits() -> None:
    base = {"type": "button", "action": buttons(1)}
    assert "interactive.button.body" in fields(refuse(to=TO, type="interactive", interactive=base))
    err = refuse(to=TO, type="interactive", interactive={**base, "body": {"text": "x" * 1025}})
    assert fields(err) == ["interactive.button.body.text"]
    err = refuse(
        to=TO, type="interactive", interactive={**base, "body": {"text": "b"}, "footer": {"text": "x" * 61}}
    )
    assert fields(err) == ["interactive.button.footer.text"]
    header = {"type": "text", "text": "x" * 61}
    err = refuse(to=TO, type="interactive", interactive={**base, "body": {"text": "b"}, "header": header})
    assert fields(err) == ["interactive.button.header.text"]


def test_list_limits() -> None:
    def rows(n: int, prefix: str = "r") -> list:
        return [{"id": f"{prefix}{i}", "title": f"Row {i}"} for i in range(n)]

    def lst(sections: list) -> dict:
        return {"type": "list", "body": {"text": "b"}, "action": {"button": "Pick", "sections": sections}}

    parse_intent({"to": TO, "type": "interactive", "interactive": lst([{"title": "A", "rows": rows(10)}])})
    assert "10" in str(refuse(to=TO, type="interactive", interactive=lst([{"title": "A", "rows": rows(11)}])))
    many = [{"title": f"S{i}", "rows": rows(1, f"s{i}-")} for i in range(11)]
    assert "interactive.list.action.sections" in fields(
        refuse(to=TO, type="interactive", interactive=lst(many))
    )
    split = [{"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}]
    assert "at most 10 rows in all" in str(refuse(to=TO, type="interactive", interactive=lst(split)))


def test_product_list_limits() -> None:
    def plist(counts: list[int]) -> dict:
        sections = [
            {"title": f"S{s}", "product_items": [{"product_retailer_id": f"p{s}-{i}"} for i in range(n)]}
            for s, n in enumerate(counts)
        ]
        return {
            "type": "product_list",
            "header": {"type": "text", "text": "h"},
            "body": {"text": "b"},
            "action": {"catalog_id": "c", "sections": sections},
        }

    parse_intent({"to": TO, "type": "interactive", "interactive": plist([15, 15])})
    assert "at most 30 products" in str(refuse(to=TO, type="interactive", interactive=plist([20, 11])))
    no_header = {**plist([1]), "header": None}
    assert fields(refuse(to=TO, type="interactive", interactive=no_header)) == [
        "interactive.product_list.header"
    ]


def test_product_and_catalog_rules() -> None:
    err = refuse(to=TO, type="interactive", interactive={"type": "product", "action": {"catalog_id": "c"}})
    assert fields(err) == ["interactive.product.action.product_retailer_id"]
    err = refuse(
        to=TO,
        type="interactive",
        interactive={"type": "catalog_message", "action": {"name": "catalog_message"}},
    )
    assert fields(err) == ["interactive.catalog_message.body"]


def test_template_rules() -> None:
    ok = {"name": "order_update", "language": {"policy": "deterministic", "code": "en_US"}}
    parse_intent({"to": TO, "type": "template", "template": ok})
    assert fields(refuse(to=TO, type="template", template={**ok, "language": {}})) == [
        "template.language.code"
    ]
    button = {"type": "button", "parameters": [{"type": "payload", "payload": "p"}]}
    assert "sub_type" in str(refuse(to=TO, type="template", template={**ok, "components": [button]}))
    param = {"type": "body", "parameters": [{"type": "text"}]}
    assert "'text' value" in str(refuse(to=TO, type="template", template={**ok, "components": [param]}))


def test_reply_context_and_location() -> None:
    assert fields(refuse(to=TO, type="text", text={"body": "x"}, context={})) == ["context.message_id"]
    assert fields(refuse(to=TO, type="location", location={"latitude": 91, "longitude": 0})) == [
        "location.latitude"
    ]


def test_error_names_every_bad_field_without_echoing_values() -> None:
    err = refuse(to="12", type="text", text={"body": "secret-ish " * 500})
    assert set(fields(err)) == {"to", "text.body"}
    assert "secret-ish" not in str(err)
