"""The HTTP API's request and response models, and the OpenAPI 3.1 document built from them.

The request bodies' schemas are the JSON schemas of the very models that validate intents at
enqueue (`worker.delivery.intents`), so the document cannot drift from what is accepted. Every
request body and every answer carries `examples`: one intent per message kind
(`worker.web.examples`), and the answers as the handlers write them. `/docs`
is Swagger UI over this document, its files served from the `swagger-ui-py` package: it works
offline.
"""

from __future__ import annotations

import html
import json
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from worker.delivery.errors import InvalidIntent
from worker.delivery.intents import MessageIntent, ReadReceipt, normalize_phone, parse_intent, parse_read
from worker.statuses.events import DeliveryStatus
from worker.web.body import MAX_BODY
from worker.web.enqueue import Outcome
from worker.web.examples import INCOMING, TASK_ID, TO, WAMID, example, intent, intent_examples

MAX_BATCH = 1000


class Reason(StrEnum):
    """The `reason` of every refusal the API answers."""

    UNAUTHORIZED = "unauthorized"  # 401
    FORBIDDEN = "forbidden"  # 403
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409
    TOO_LARGE = "too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    MALFORMED = "malformed"  # 400
    INVALID = "invalid"  # 422
    RATE_LIMITED = "rate_limited"  # 429
    NOT_ENQUEUED = "not_enqueued"  # 503
    UNAVAILABLE = "unavailable"  # 503


class FieldError(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    """Every refusal: what went wrong for a person, `reason` for a program."""

    error: str
    reason: Reason
    errors: list[FieldError] | None = None  # 422: each bad field, as InvalidIntent.errors
    task_id: str | None = None  # 409: the task the key already names


class Accepted(BaseModel):
    task_id: str
    idempotency_key: str  # the intent's key: the one given, else the task id
    status_url: str


class ReadAccepted(BaseModel):
    task_id: str
    status_url: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[MessageIntent], Field(min_length=1, max_length=MAX_BATCH)]


class BatchItem(BaseModel):
    index: int
    outcome: Outcome
    task_id: str | None = None  # accepted or duplicate (or, for a conflict, the key's first task)
    idempotency_key: str | None = None
    status_url: str | None = None
    error: str | None = None
    errors: list[FieldError] | None = None


class BatchResult(BaseModel):
    accepted: int  # enqueued now, or already by an earlier request with the same key
    refused: int
    items: list[BatchItem]


class Erasure(BaseModel):
    """What `DELETE /v1/customers/{number}` (and `wa-dispatch forget --json`) removed."""

    number: str  # E.164
    kept_as: str  # the salted hash that stands for the number where a record must remain
    removed: dict[str, int]  # by key family and action, e.g. "wa:idem replace_field": 2


class MessageStatus(BaseModel):
    """`wa-dispatch status --json`: the task's state, its result or failure, the delivery status."""

    model_config = ConfigDict(extra="allow")

    task_id: str | None
    state: str | None
    wamid: str | None = None
    delivery_status: DeliveryStatus | None = None


REQUESTS: list[type[BaseModel]] = [MessageIntent, ReadReceipt, BatchRequest]
RESPONSES: list[type[BaseModel]] = [Accepted, ReadAccepted, BatchResult, MessageStatus, Erasure, Problem]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, examples: dict[str, Any], **extra: Any) -> dict[str, Any]:
    content = {"schema": schema, "examples": examples}
    return {"description": description, "content": {"application/json": content}, **extra}


def _invalid(parse: Any, bad: dict[str, Any]) -> dict[str, Any]:
    """The 422 body the API answers for `bad` (the models' own wording)."""
    try:
        parse(bad)
    except InvalidIntent as exc:
        return {"error": str(exc), "reason": Reason.INVALID, "errors": exc.errors}
    raise AssertionError(f"{bad} is valid")  # pragma: no cover - the examples are fixed


def _problem(reason: Reason, error: str, **fields: Any) -> dict[str, Any]:
    return {"error": error, "reason": reason, **fields}


_ACCEPTED = {"task_id": TASK_ID, "idempotency_key": TASK_ID, "status_url": f"/v1/messages/{TASK_ID}"}
_REPLAYED = {**_ACCEPTED, "idempotency_key": "order-42-shipped"}
_NO_BATCH = "expected {'messages': [intent, ...]} with at least one intent"


def _batch_item(index: int, task_id: str) -> dict[str, Any]:
    return {
        "index": index,
        "outcome": Outcome.ACCEPTED,
        "task_id": task_id,
        "idempotency_key": task_id,
        "status_url": f"/v1/messages/{task_id}",
    }


_SECOND_TASK = "9a0d4e7b-2c51-4f3a-8e16-b7c9d0f2a3e4"
_BAD_TO = {"to": "12345", "type": "text", "text": {"body": "Hi"}}


def _batch_examples() -> dict[str, dict[str, Any]]:
    """The batch's request and answers: by status code, then example name."""
    invalid = _invalid(parse_intent, _BAD_TO)
    refused = {"index": 1, "outcome": Outcome.INVALID, "error": invalid["error"], "errors": invalid["errors"]}
    not_enqueued = "the broker did not answer; nothing was enqueued"
    return {
        "request": {
            "two": example(
                "a text and a template",
                {"messages": [intent("text"), {**intent("template"), "to": "+919876500011"}]},
            )
        },
        "202": {
            "accepted": example(
                "both enqueued",
                {
                    "accepted": 2,
                    "refused": 0,
                    "items": [_batch_item(0, TASK_ID), _batch_item(1, _SECOND_TASK)],
                },
            )
        },
        "207": {
            "refused": example(
                "the second intent invalid",
                {"accepted": 1, "refused": 1, "items": [_batch_item(0, TASK_ID), refused]},
            )
        },
        "503": {
            "not_enqueued": example(
                "nothing enqueued: the broker did not answer",
                {
                    "accepted": 0,
                    "refused": 1,
                    "items": [{"index": 0, "outcome": Outcome.NOT_ENQUEUED, "error": not_enqueued}],
                },
            ),
            "unavailable": example(
                "Redis did not answer (the key's rate)",
                _problem(Reason.UNAVAILABLE, "Redis did not answer; nothing was enqueued"),
            ),
        },
    }


_STATUSES = {
    "delivered": example(
        "sent, and delivered (the status webhook came back)",
        {
            "task_id": TASK_ID,
            "state": "SUCCESS",
            "wamid": WAMID,
            "to": "+91******3210",
            "attempts": 1,
            "duplicate": False,
            "delivery_status": DeliveryStatus.DELIVERED,
            "delivery_updated_at": 1767225600.0,
        },
    ),
    "queued": example(
        "enqueued, not sent yet", {"task_id": TASK_ID, "state": "PENDING", "delivery_status": None}
    ),
    "failed": example(
        "refused by the API: a permanent failure, not retried",
        {
            "task_id": TASK_ID,
            "state": "FAILURE",
            "error": "(131026) Message undeliverable: Message Undeliverable.",
            "kind": "permanent",
            "code": 131026,
            "title": "Message undeliverable",
            "delivery_status": None,
        },
    ),
}


# ---- refusals -------------------------------------------------------------------------------

_REFUSALS = {
    "400": ("the body is not JSON", _problem(Reason.MALFORMED, "the body is not JSON")),
    "401": (
        "no key, or not one of DISPATCH_API_KEYS",
        _problem(Reason.UNAUTHORIZED, "missing or unknown API key (Authorization: Bearer)"),
    ),
    "413": (
        "the body is over 1 MiB, or a batch over 1,000 intents",
        _problem(Reason.TOO_LARGE, f"the body is over {MAX_BODY} bytes"),
    ),
    "415": (
        "the body is not application/json",
        _problem(Reason.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json"),
    ),
    "429": (
        "this key's request rate limit; wait Retry-After seconds",
        _problem(Reason.RATE_LIMITED, "this key's request rate limit; retry after a while"),
    ),
    "503": (
        "the broker or Redis did not answer: nothing was enqueued",
        _problem(Reason.NOT_ENQUEUED, "the broker did not answer; nothing was enqueued"),
    ),
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def _refusals(*codes: str, **more: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Problem answers: the common ones by code, `more` as (description, example body) by code."""
    described = {c: _REFUSALS[c] for c in codes} | more
    return {
        code: _json(
            _ref("Problem"),
            text,
            {Reason(body["reason"]).value: example(text, body)},
            **({"headers": _RETRY_AFTER} if code == "429" else {}),
        )
        for code, (text, body) in described.items()
    }


_IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


# OpenAPI links: an accepted answer's task_id is the status route's path parameter (what
# schemathesis's stateful run follows, and a client generator can too).
_STATUS_LINK = {
    "MessageStatus": {
        "operationId": "messageStatus",
        "parameters": {"task_id": "$response.body#/task_id"},
        "description": "the status of the task just enqueued",
    }
}


def _request(schema: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}


def _paths(refs: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> dict[str, Any]:
    body = "400", "401", "413", "415", "429", "503"
    forbidden = "the intent names a sender this key may not use"
    batch = _batch_examples()
    conflict = _problem(
        Reason.CONFLICT,
        "idempotency key 'order-42-shipped' was used for another intent",
        task_id=TASK_ID,
    )
    return {
        "/v1/messages": {
            "post": {
                "summary": "Enqueue one message (send_message's keyword arguments)",
                "operationId": "sendMessage",
                "parameters": [{**_IDEMPOTENCY_HEADER, "description": "sent once per key (24 h)"}],
                "requestBody": _request(refs["intent"], intent_examples(schemas)),
                "responses": {
                    "202": _json(
                        refs["accepted"],
                        "enqueued",
                        {"accepted": example("enqueued", _ACCEPTED)},
                        links=_STATUS_LINK,
                    ),
                    "200": _json(
                        refs["accepted"],
                        "the same key and intent were enqueued before",
                        {
                            "replayed": example(
                                "the first request's task (Idempotent-Replayed: true)", _REPLAYED
                            )
                        },
                        links=_STATUS_LINK,
                    ),
                    **_refusals(
                        *body,
                        **{
                            "403": (
                                forbidden,
                                _problem(Reason.FORBIDDEN, "this API key may not send as 'support'"),
                            ),
                            "409": ("the key was used for another intent", conflict),
                            "422": ("an invalid intent", _invalid(parse_intent, _BAD_TO)),
                        },
                    ),
                },
            }
        },
        "/v1/messages/batch": {
            "post": {
                "summary": f"Enqueue up to {MAX_BATCH:,} messages; the valid ones are enqueued",
                "operationId": "sendBatch",
                "parameters": [{**_IDEMPOTENCY_HEADER, "description": "keys item i as '<key>:<i>'"}],
                "requestBody": _request(refs["batch"], batch["request"]),
                "responses": {
                    "202": _json(
                        refs["batch_result"], "every intent enqueued (or enqueued before)", batch["202"]
                    ),
                    "207": _json(refs["batch_result"], "some intents refused: see each item", batch["207"]),
                    **_refusals(
                        "400",
                        "401",
                        "413",
                        "415",
                        "429",
                        **{
                            "422": (
                                "not a batch (no `messages` list)",
                                _problem(
                                    Reason.INVALID,
                                    _NO_BATCH,
                                    errors=[{"field": "messages", "reason": _NO_BATCH}],
                                ),
                            )
                        },
                    ),
                    "503": _json(
                        {"anyOf": [refs["batch_result"], _ref("Problem")]},
                        "no intent enqueued: the broker or Redis did not answer",
                        batch["503"],
                    ),
                },
            }
        },
        "/v1/messages/{task_id}": {
            "get": {
                "summary": "A message's task state, wamid or failure, and delivery status",
                "operationId": "messageStatus",
                "parameters": [
                    {
                        "name": "task_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": TASK_ID,
                    }
                ],
                "responses": {
                    "200": _json(refs["status"], "what `wa-dispatch status --json` prints", _STATUSES),
                    **_refusals(
                        "401",
                        "429",
                        **{
                            "404": (
                                "a task of a sender this key may not use",
                                _problem(Reason.NOT_FOUND, "no message with this task id for this API key"),
                            ),
                            "503": (
                                "Redis did not answer",
                                _problem(Reason.UNAVAILABLE, "Redis did not answer"),
                            ),
                        },
                    ),
                },
            }
        },
        "/v1/read": {
            "post": {
                "summary": "Mark an incoming message as read",
                "operationId": "markRead",
                "requestBody": _request(
                    refs["read"],
                    {
                        "read": example("mark it read", {"message_id": INCOMING}),
                        "typing": example(
                            "mark it read and show 'typing...'",
                            {
                                "message_id": INCOMING,
                                "sender": "support",
                                "typing_indicator": {"type": "text"},
                            },
                        ),
                    },
                ),
                "responses": {
                    "202": _json(
                        refs["read_accepted"],
                        "enqueued",
                        {
                            "accepted": example(
                                "enqueued", {"task_id": TASK_ID, "status_url": _ACCEPTED["status_url"]}
                            )
                        },
                    ),
                    **_refusals(
                        *body,
                        **{
                            "403": (
                                forbidden,
                                _problem(Reason.FORBIDDEN, "this API key may not use sender 'support'"),
                            ),
                            "422": ("an invalid receipt", _invalid(parse_read, {"message_id": ""})),
                        },
                    ),
                },
            }
        },
        "/v1/customers/{number}": {
            "delete": {
                "summary": "Erase a customer's number and messages from every key in Redis "
                "(`wa-dispatch forget`); queued messages to the number are cancelled",
                "operationId": "eraseCustomer",
                "description": "For a key named in DISPATCH_ERASURE_KEYS only. A record that must "
                "remain keeps a salted hash in the number's place: an opt-out still holds, an "
                "idempotency key is still answered as a duplicate. Scans the deployment's Redis: "
                "seconds per million keys.",
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "E.164 (`+` as %2B or as is), or the digits of a wa_id",
                        "example": TO,
                    }
                ],
                "responses": {
                    "200": _json(
                        refs["erasure"],
                        "erased: what was removed, by key family and action",
                        {"erased": example("erased", ERASED)},
                    ),
                    **_refusals(
                        "401",
                        "429",
                        **{
                            "403": (
                                "this key is not named in DISPATCH_ERASURE_KEYS",
                                _problem(Reason.FORBIDDEN, NO_ERASURE),
                            ),
                            "422": ("not a phone number", _bad_number()),
                            "503": (
                                "Redis did not answer (the erasure may be partly done: repeat it)",
                                _problem(Reason.UNAVAILABLE, "Redis did not answer; repeat the erasure"),
                            ),
                        },
                    ),
                },
            }
        },
    }


NO_ERASURE = "this API key may not erase customers (DISPATCH_ERASURE_KEYS)"
ERASED = {
    "number": TO,
    "kept_as": "erased:5d2c0f6e3b1a49c8a7e1f0b2d4c6e8a0",
    "removed": {"celery-task-meta rewrite": 1, "wa:idem replace_field": 1, "wa:window delete_key": 1},
}


def bad_number(number: str) -> dict[str, Any] | None:
    """The 422 body for a customer number that is not one, or None (and the number, E.164)."""
    try:
        normalize_phone(number)
    except ValueError as exc:
        return _problem(Reason.INVALID, f"number: {exc}", errors=[{"field": "number", "reason": str(exc)}])
    return None


def _bad_number() -> dict[str, Any]:
    return bad_number("12345") or {}


@lru_cache(maxsize=1)
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; it depends on code only)."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in REQUESTS]
    models += [(m, "serialization") for m in RESPONSES]
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    by_name = {
        "intent": refs[(MessageIntent, "validation")],
        "read": refs[(ReadReceipt, "validation")],
        "batch": refs[(BatchRequest, "validation")],
        "accepted": refs[(Accepted, "serialization")],
        "read_accepted": refs[(ReadAccepted, "serialization")],
        "batch_result": refs[(BatchResult, "serialization")],
        "status": refs[(MessageStatus, "serialization")],
        "erasure": refs[(Erasure, "serialization")],
    }
    schemas = defs["$defs"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whatsapp-dispatch",
            "version": "1",
            "description": "Enqueue WhatsApp messages (Interakt, Cloud API v17.0) with the guarantees "
            "of the Python path: validated at enqueue, sent once per idempotency key, retried, recorded.",
        },
        "security": [{"bearer": []}],
        "paths": _paths(by_name, schemas),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key of DISPATCH_API_KEYS (its text, not its hash)",
                }
            },
        },
    }


DOCS_STATIC = "/docs/static"  # swagger-ui-py's static folder, mounted by worker.web.api

# Swagger UI's settings: "Try it out" open on every route; the key typed into "Authorize" kept in
# the page's memory only, never in the browser's storage; no call to validator.swagger.io.
_SWAGGER_UI = {
    "dom_id": "#swagger-ui",
    "tryItOutEnabled": True,
    "persistAuthorization": False,
    "validatorUrl": None,
    "deepLinking": True,
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
}


def docs_page(root_path: str = "") -> str:
    """Swagger UI over /openapi.json. Every URL is under `root_path` (the proxy's prefix, as the
    status URLs are), and every file is this process's own: nothing is fetched from elsewhere."""
    static = html.escape(root_path + DOCS_STATIC, quote=True)
    settings = json.dumps({"url": root_path + "/openapi.json", **_SWAGGER_UI})
    script = settings.replace("<", "\\u003c")  # no "</script>" can end the script early
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>whatsapp-dispatch HTTP API</title>"
        f'<link rel="stylesheet" href="{static}/swagger-ui.css">'
        f'<link rel="icon" type="image/png" href="{static}/favicon-32x32.png">'
        '</head><body><div id="swagger-ui"></div>'
        f'<script src="{static}/swagger-ui-bundle.js"></script>'
        f"<script>window.ui = SwaggerUIBundle({script});</script>"
        "</body></html>"
    )
