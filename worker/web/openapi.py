"""The HTTP API's request and response models, and the OpenAPI 3.1 document built from them.

The request bodies' schemas are the JSON schemas of the very models that validate intents at
enqueue (`worker.delivery.intents`), so the document cannot drift from what is accepted. `/docs`
is rendered here too, as one self-contained page (no script, no CDN): it works offline.
"""

from __future__ import annotations

import html
import json
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from worker.delivery.intents import MessageIntent, ReadReceipt
from worker.statuses.events import DeliveryStatus
from worker.web.enqueue import Outcome

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


class MessageStatus(BaseModel):
    """`wa-dispatch status --json`: the task's state, its result or failure, the delivery status."""

    model_config = ConfigDict(extra="allow")

    task_id: str | None
    state: str | None
    wamid: str | None = None
    delivery_status: DeliveryStatus | None = None


REQUESTS: list[type[BaseModel]] = [MessageIntent, ReadReceipt, BatchRequest]
RESPONSES: list[type[BaseModel]] = [Accepted, ReadAccepted, BatchResult, MessageStatus, Problem]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


_REFUSALS = {
    "400": "the body is not JSON",
    "401": "no key, or not one of DISPATCH_API_KEYS",
    "413": "the body is over 1 MiB, or a batch over 1,000 intents",
    "415": "the body is not application/json",
    "429": "this key's request rate limit; wait Retry-After seconds",
    "503": "the broker or Redis did not answer: nothing was enqueued",
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}


def _refusals(*codes: str, **more: str) -> dict[str, Any]:
    described = {c: _REFUSALS[c] for c in codes} | more
    return {
        code: _json(_ref("Problem"), text, **({"headers": _RETRY_AFTER} if code == "429" else {}))
        for code, text in described.items()
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


def _paths(refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    body = "400", "401", "413", "415", "429", "503"
    forbidden = "the intent names a sender this key may not use"
    return {
        "/v1/messages": {
            "post": {
                "summary": "Enqueue one message (send_message's keyword arguments)",
                "operationId": "sendMessage",
                "parameters": [{**_IDEMPOTENCY_HEADER, "description": "sent once per key (24 h)"}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": refs["intent"]}},
                },
                "responses": {
                    "202": _json(refs["accepted"], "enqueued", links=_STATUS_LINK),
                    "200": _json(
                        refs["accepted"], "the same key and intent were enqueued before", links=_STATUS_LINK
                    ),
                    **_refusals(
                        *body,
                        **{
                            "403": forbidden,
                            "409": "the key was used for another intent",
                            "422": "an invalid intent",
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
                "requestBody": {"required": True, "content": {"application/json": {"schema": refs["batch"]}}},
                "responses": {
                    "202": _json(refs["batch_result"], "every intent enqueued (or enqueued before)"),
                    "207": _json(refs["batch_result"], "some intents refused: see each item"),
                    **_refusals(*body, **{"422": "not a batch (no `messages` list)"}),
                },
            }
        },
        "/v1/messages/{task_id}": {
            "get": {
                "summary": "A message's task state, wamid or failure, and delivery status",
                "operationId": "messageStatus",
                "parameters": [
                    {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json(refs["status"], "what `wa-dispatch status --json` prints"),
                    **_refusals("401", "429", "503", **{"404": "a task of a sender this key may not use"}),
                },
            }
        },
        "/v1/read": {
            "post": {
                "summary": "Mark an incoming message as read",
                "operationId": "markRead",
                "requestBody": {"required": True, "content": {"application/json": {"schema": refs["read"]}}},
                "responses": {
                    "202": _json(refs["read_accepted"], "enqueued"),
                    **_refusals(*body, **{"403": forbidden, "422": "an invalid receipt"}),
                },
            }
        },
    }


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
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "whatsapp-dispatch",
            "version": "1",
            "description": "Enqueue WhatsApp messages (Interakt, Cloud API v17.0) with the guarantees "
            "of the Python path: validated at enqueue, sent once per idempotency key, retried, recorded.",
        },
        "security": [{"bearer": []}],
        "paths": _paths(by_name),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def docs_page() -> str:
    """A page for a person: each route, its answers, and the schemas, rendered on the server."""
    doc = openapi()
    rows = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            answers = ", ".join(f"{code} {r['description']}" for code, r in op["responses"].items())
            rows.append(
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                f"<p>{html.escape(op['summary'])}</p><p class=a>{html.escape(answers)}</p>"
            )
    schemas = "".join(
        f"<details><summary>{html.escape(name)}</summary>"
        f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre></details>"
        for name, schema in sorted(doc["components"]["schemas"].items())
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>whatsapp-dispatch API</title>"
        "<style>body{font:15px system-ui;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "pre{background:#f4f4f4;padding:.5rem;overflow:auto}.a{color:#555}</style></head><body>"
        f"<h1>whatsapp-dispatch HTTP API</h1><p>{html.escape(doc['info']['description'])}</p>"
        "<p>Every route takes <code>Authorization: Bearer &lt;key&gt;</code>. "
        'Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>'
        f"{''.join(rows)}<h2>Schemas</h2>{schemas}</body></html>"
    )
