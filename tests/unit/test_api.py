"""The HTTP API's pure parts: what an intent becomes before it is enqueued, and the OpenAPI
document, whose request bodies are the intent models' own schemas."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests import spec_examples
from worker.delivery.intents import MessageIntent, ReadReceipt, parse_intent, parse_read
from worker.web.api import swagger_ui_files
from worker.web.auth import ApiKey
from worker.web.enqueue import Outcome, fingerprint, prepare, scoped, unscoped
from worker.web.examples import message_kinds
from worker.web.openapi import MAX_BATCH, BatchRequest, docs_page, openapi

INTENT = {"to": "+919999595313", "type": "text", "text": {"body": "Hi"}}


SHOP = ApiKey("shop", "0" * 64)  # every sender


def test_fingerprints_ignore_key_order_only() -> None:
    assert fingerprint({"a": 1, "b": {"c": 2, "d": 3}}) == fingerprint({"b": {"d": 3, "c": 2}, "a": 1})
    assert fingerprint(INTENT) != fingerprint({**INTENT, "text": {"body": "Hi!"}})


def test_the_header_key_becomes_the_intents_idempotency_key_in_the_api_keys_namespace() -> None:
    item = prepare(INTENT, "order-42", SHOP)
    assert item.outcome is None and item.key == "order-42"
    assert item.kwargs == {**INTENT, "idempotency_key": "shop:order-42"} and "idempotency_key" not in INTENT
    assert prepare({**INTENT, "idempotency_key": "order-42"}, "order-42", SHOP).outcome is None
    assert prepare({**INTENT, "idempotency_key": "k"}, None, SHOP).key == "k"
    assert prepare(INTENT, None, SHOP).key is None
    other = prepare(INTENT, "order-42", ApiKey("other", "1" * 64))
    assert other.kwargs["idempotency_key"] == "other:order-42"


def test_a_scoped_key_fits_the_intents_bound_and_reads_back() -> None:
    longest = "k" * 200
    kept = scoped("a" * 64, longest)
    assert len(kept) <= 200 and kept == scoped("a" * 64, longest) != scoped("a" * 64, "k" * 199 + "j")
    assert MessageIntent.model_validate({**INTENT, "idempotency_key": kept})
    assert unscoped("shop", scoped("shop", "order-42")) == "order-42"
    assert unscoped("other", scoped("shop", "order-42")) == "shop:order-42"  # another key's, as kept
    assert unscoped("shop", "a-task-id") == "a-task-id"


@pytest.mark.parametrize(
    ("raw", "header", "outcome", "field"),
    [
        ([INTENT], None, Outcome.INVALID, "intent"),
        ("text", None, Outcome.INVALID, "intent"),
        ({**INTENT, "idempotency_key": "a"}, "b", Outcome.INVALID, "idempotency_key"),
        ({**INTENT, "sender": "marketing"}, None, Outcome.FORBIDDEN, None),
        ({**INTENT, "idempotency_key": "k\ud800"}, None, Outcome.INVALID, "idempotency_key"),
        (INTENT, "", Outcome.INVALID, "idempotency_key"),
        (INTENT, "k" * 201, Outcome.INVALID, "idempotency_key"),
        ({**INTENT, "campaign": {"name": "spring", "run_id": "r1"}}, None, Outcome.INVALID, "campaign"),
    ],
)
def test_what_is_refused_before_validation(
    raw: Any, header: str | None, outcome: Outcome, field: str
) -> None:
    item = prepare(raw, header, ApiKey("shop", "0" * 64, frozenset({"default", "support"})))
    assert item.outcome == outcome and item.message
    assert [e["field"] for e in item.errors] == ([field] if field else [])


def test_the_request_bodies_are_the_models_own_schemas() -> None:
    doc = openapi()
    schemas = doc["components"]["schemas"]

    def body(path: str) -> dict[str, Any]:
        ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]

    for path, model in (("/v1/messages", MessageIntent), ("/v1/read", ReadReceipt)):
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        nested = own.pop("$defs", {})
        assert body(path) == own
        assert all(schemas[name] == schema for name, schema in nested.items())
    assert body("/v1/messages/batch")["properties"]["messages"]["maxItems"] == MAX_BATCH
    assert (
        doc["openapi"].startswith("3.1")
        and doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    )
    for path, methods in doc["paths"].items():
        for op in methods.values():
            assert "500" not in op["responses"], path


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of `schema` whose $refs resolve in the document's components."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def test_every_answer_of_every_route_has_examples_that_fit_its_schema() -> None:
    doc = openapi()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            bodies = [("request", op["requestBody"])] if "requestBody" in op else []
            for name, part in [*bodies, *op["responses"].items()]:
                media = part["content"]["application/json"]
                assert media["examples"], (method, path, name)
                check = _validator(doc, media["schema"])
                for example_name, example in media["examples"].items():
                    errors = [e.message for e in check.iter_errors(example["value"])]
                    assert not errors, (method, path, name, example_name, errors)


def _examples(doc: dict[str, Any], path: str) -> dict[str, Any]:
    media = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in media["examples"].items()}


def test_a_request_example_for_every_message_kind_and_each_one_is_accepted() -> None:
    doc = openapi()
    kinds = message_kinds(doc["components"]["schemas"])
    # The kinds the models take, read as the document is built: a kind added there needs an example.
    assert {"text", "image", "template", "interactive/button", "interactive/list"} <= set(kinds)
    # ... and at least every kind the spec examples send.
    seed = set(spec_examples.OTHERS) - {"interactive"}
    contents = [spec_examples.OTHERS["interactive"], spec_examples.LIST, *spec_examples.INTERACTIVE_KINDS]
    contents += [
        p["interactive"] for p in (spec_examples.CATALOG, spec_examples.PRODUCT, spec_examples.PRODUCT_LIST)
    ]
    seed |= {f"interactive/{content['type']}" for content in contents}
    assert seed <= set(kinds)
    examples = _examples(doc, "/v1/messages")
    missing = [k for k in kinds if k.replace("/", "_") not in examples]
    assert not missing, f"no example intent in worker/web/examples.py for {missing}"
    assert next(iter(examples)) == "text"  # what Swagger UI shows first, and "Try it out" sends
    for name, intent in examples.items():
        parsed = parse_intent(intent)  # the rules beyond the schema too (amounts, E.164, ...)
        kind = parsed.type if parsed.interactive is None else f"interactive_{parsed.interactive.type}"
        assert name in (kind, "reply"), name
    for receipt in _examples(doc, "/v1/read").values():
        parse_read(receipt)
    for batch in _examples(doc, "/v1/messages/batch").values():
        for intent in BatchRequest.model_validate(batch).messages:
            assert intent.to.startswith("+91")


def test_the_docs_page_is_swagger_ui_over_the_document_from_this_process_only() -> None:
    page = docs_page("/dispatch")
    for path in ("/dispatch/docs/static/swagger-ui-bundle.js", "/dispatch/docs/static/swagger-ui.css"):
        assert path in page and (swagger_ui_files() / path.rsplit("/", 1)[1]).is_file()
    settings = json.loads(page.split("SwaggerUIBundle(", 1)[1].split(");</script>", 1)[0])
    assert settings["url"] == "/dispatch/openapi.json"
    assert settings["tryItOutEnabled"] is True and settings["persistAuthorization"] is False
    assert settings["validatorUrl"] is None  # no call to validator.swagger.io
    assert "http://" not in page and "https://" not in page  # no CDN
    hostile = docs_page("/x</script><b>")
    assert "</script><b>" not in hostile and "/x&lt;/script&gt;&lt;b&gt;" in hostile
    assert openapi()["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key of DISPATCH_API_KEYS (its text, not its hash)",
    }


def test_single_intents_that_arrive_together_are_enqueued_together() -> None:
    import asyncio
    import threading

    from worker.web.enqueue import Coalescer, Item

    groups: list[int] = []
    release = threading.Event()

    class Slow:
        def enqueue(self, items: list[Item]) -> None:
            release.wait(5)  # the first group is being written while the others arrive
            groups.append(len(items))
            for item in items:
                item.outcome = Outcome.ACCEPTED

    async def arrive() -> list[Item]:
        coalescer = Coalescer(Slow(), most=20)  # type: ignore[arg-type]
        items = [Item({"n": n}) for n in range(50)]
        waiting = [asyncio.create_task(coalescer.enqueue(items[0]))]
        await asyncio.sleep(0.05)  # a lone intent goes at once, alone
        waiting += [asyncio.create_task(coalescer.enqueue(item)) for item in items[1:]]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*waiting)
        assert coalescer.drain is None
        return items

    items = asyncio.run(arrive())
    assert groups == [1, 20, 20, 9] and all(item.outcome == Outcome.ACCEPTED for item in items)
