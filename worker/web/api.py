"""The HTTP API: enqueue, batch, status, read receipts and erasure for apps in any language.

Each request is checked in this order, and the first refusal answers: 401 (no key, or not one of
ours), 429 (the key's rate), 415 (not application/json), 413 (over 1 MiB), 400 (not JSON, or a
number that is not finite), then per intent 403 (a sender the key may not use), 409 (a key used
for another intent) and 422 (invalid, with InvalidIntent's field-by-field errors); 503 when the
broker or Redis does not answer, with nothing enqueued. Every answer is JSON; no input is
answered 500.

Enqueueing is `worker.web.enqueue`, in a thread (redis-py and kombu block).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from celery.utils import uuid
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from worker.delivery.errors import EnqueueError, InvalidIntent
from worker.delivery.intents import normalize_phone
from worker.message_status import delivery_status, intent_sender
from worker.ops.erasure import Eraser
from worker.ops.logs import get_logger, mask_phone
from worker.tasks import mark_read
from worker.web.auth import ApiKey, bearer, find_key
from worker.web.body import MAX_BODY, parse_json, read_body
from worker.web.enqueue import Enqueuer, Item, Outcome, prepare, unscoped
from worker.web.openapi import (
    DOCS_STATIC,
    MAX_BATCH,
    NO_ERASURE,
    Accepted,
    BatchItem,
    BatchResult,
    ReadAccepted,
    Reason,
    bad_number,
    docs_page,
    openapi,
)

log = get_logger("whatsapp_dispatch.api")

COUNT_WITHIN = 2.5  # the rate limit's count; longer is a 503 (the client's Redis timeout is 1 s)
STATUS_WITHIN = 5.0  # a status read that takes longer is a 503: Redis is not answering

Handler = Callable[[Request, ApiKey], Awaitable[Response]]


class Refusal(Exception):
    """Raised inside a handler; answered as a Problem body with this status."""

    def __init__(self, status: int, reason: Reason, error: str, **fields: Any) -> None:
        super().__init__(error)
        self.status, self.reason, self.error, self.fields = status, reason, error, fields


def _problem(refusal: Refusal, key: ApiKey | None, headers: dict[str, str] | None = None) -> JSONResponse:
    level = log.error if refusal.status >= 500 else log.info
    level("api_refused", http_status=refusal.status, reason=refusal.reason, key=key.name if key else None)
    body = {"error": refusal.error, "reason": refusal.reason, **refusal.fields}
    return JSONResponse(body, status_code=refusal.status, headers=headers)


def authorized(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """401 without a known key, 429 past its rate, 503 when Redis cannot count; then `handler`."""

    async def route(request: Request) -> Response:
        key = None
        try:
            given = request.headers.getlist("authorization")
            if len(given) > 1:  # which one would decide is for no one to guess
                raise Refusal(401, Reason.UNAUTHORIZED, "more than one Authorization header")
            presented = bearer(given[0] if given else None)
            key = find_key(request.app.state.api_keys, presented) if presented else None
            if key is None:
                raise Refusal(401, Reason.UNAUTHORIZED, "missing or unknown API key (Authorization: Bearer)")
            try:
                wait = await asyncio.wait_for(request.app.state.api_rate.retry_after(key.name), COUNT_WITHIN)
            except (RedisError, OSError, TimeoutError):
                raise Refusal(503, Reason.UNAVAILABLE, "Redis did not answer; nothing was enqueued") from None
            if wait is not None:
                refusal = Refusal(
                    429, Reason.RATE_LIMITED, "this key's request rate limit; retry after a while"
                )
                return _problem(refusal, key, {"Retry-After": str(wait)})
            return await handler(request, key)
        except Refusal as refusal:
            return _problem(refusal, key)

    return route


async def json_body(request: Request) -> Any:
    """The request's JSON, or a Refusal: 415 not JSON by content type, 413 too large, 400 unparsable."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise Refusal(415, Reason.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
    body = await read_body(request)
    if body is None:
        raise Refusal(413, Reason.TOO_LARGE, f"the body is over {MAX_BODY} bytes")
    try:
        return parse_json(body)
    except ValueError:
        raise Refusal(400, Reason.MALFORMED, "the body is not JSON") from None


def idempotency_header(request: Request) -> str | None:
    """The Idempotency-Key header as UTF-8 text (HTTP hands it over as latin-1), or a 422."""
    given = request.headers.getlist("idempotency-key")
    if not given:
        return None
    reason = "given more than once"
    if len(given) == 1:
        try:
            return given[0].encode("latin-1").decode("utf-8")
        except UnicodeError:
            reason = "not UTF-8 text"
    error = {"field": "Idempotency-Key", "reason": reason}
    raise Refusal(422, Reason.INVALID, f"Idempotency-Key: {reason}", errors=[error])


STATUS_PATH = "/v1/messages/{task_id}"


def _status_url(request: Request, task_id: str) -> str:
    """Relative, so it holds behind a proxy; formatted, as url_for costs 20 ms for a batch."""
    return request.scope.get("root_path", "") + STATUS_PATH.format(task_id=task_id)


def _enqueuer(request: Request) -> Enqueuer:
    return request.app.state.enqueuer


def _single_refusal(item: Item) -> Refusal:
    status, reason = {
        Outcome.INVALID: (422, Reason.INVALID),
        Outcome.FORBIDDEN: (403, Reason.FORBIDDEN),
        Outcome.CONFLICT: (409, Reason.CONFLICT),
        Outcome.NOT_ENQUEUED: (503, Reason.NOT_ENQUEUED),
    }[item.settled]
    fields: dict[str, Any] = {"errors": item.errors} if item.errors else {}
    if item.outcome == Outcome.CONFLICT:
        fields["task_id"] = item.task_id
    return Refusal(status, reason, item.message or str(item.outcome), **fields)


async def send(request: Request, key: ApiKey) -> Response:
    raw = await json_body(request)
    item = prepare(raw, idempotency_header(request), key)
    if item.outcome is None:
        await request.app.state.singles.enqueue(item)
    if item.outcome not in (Outcome.ACCEPTED, Outcome.DUPLICATE):
        raise _single_refusal(item)
    task_id = str(item.task_id)
    accepted = Accepted(
        task_id=task_id,
        idempotency_key=str(item.idempotency_key),
        status_url=_status_url(request, task_id),
    )
    replayed = item.outcome == Outcome.DUPLICATE
    return JSONResponse(
        accepted.model_dump(),
        status_code=200 if replayed else 202,
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


async def send_batch(request: Request, key: ApiKey) -> Response:
    doc = await json_body(request)
    messages = doc.get("messages") if isinstance(doc, dict) else None
    if not isinstance(messages, list) or not messages or set(doc) != {"messages"}:
        reason = "expected {'messages': [intent, ...]} with at least one intent"
        raise Refusal(422, Reason.INVALID, reason, errors=[{"field": "messages", "reason": reason}])
    if len(messages) > MAX_BATCH:
        raise Refusal(413, Reason.TOO_LARGE, f"{len(messages)} intents: a batch takes at most {MAX_BATCH}")
    batch_key = idempotency_header(request)
    items = [
        prepare(raw, f"{batch_key}:{i}" if batch_key and _unkeyed(raw) else None, key)
        for i, raw in enumerate(messages)
    ]
    await run_in_threadpool(_enqueuer(request).enqueue, items)
    result = batch_result(request, items)
    if result.accepted == 0 and any(i.outcome == Outcome.NOT_ENQUEUED for i in items):
        status = 503
    else:
        status = 202 if result.refused == 0 else 207
    return JSONResponse(result.model_dump(exclude_none=True), status_code=status)


def _unkeyed(raw: Any) -> bool:
    return not (isinstance(raw, dict) and raw.get("idempotency_key") is not None)


def batch_result(request: Request, items: list[Item]) -> BatchResult:
    ok = (Outcome.ACCEPTED, Outcome.DUPLICATE)
    rows = []
    for index, item in enumerate(items):
        row = BatchItem(index=index, outcome=item.settled, task_id=item.task_id)
        if item.outcome in ok:
            row.idempotency_key = item.idempotency_key
            row.status_url = _status_url(request, str(item.task_id))
        else:
            row.error = item.message
            row.errors = item.errors or None  # type: ignore[assignment]
        rows.append(row)
    accepted = sum(1 for item in items if item.outcome in ok)
    return BatchResult(accepted=accepted, refused=len(items) - accepted, items=rows)


async def status(request: Request, key: ApiKey) -> Response:
    """404 for a task of a sender this key may not use, as for one that does not exist."""
    task_id = request.path_params["task_id"]
    try:
        data = await asyncio.wait_for(
            run_in_threadpool(_readable_status, _enqueuer(request), task_id, key), STATUS_WITHIN
        )
    except (RedisError, OSError, TimeoutError):
        raise Refusal(503, Reason.UNAVAILABLE, "Redis did not answer") from None
    if data is None:
        raise Refusal(404, Reason.NOT_FOUND, "no message with this task id for this API key")
    if "idempotency_key" in data:  # as this key gave it
        data["idempotency_key"] = unscoped(key.name, data["idempotency_key"])
    return JSONResponse(data)


def _readable_status(enqueuer: Enqueuer, task_id: str, key: ApiKey) -> dict[str, Any] | None:
    """The task's status, or None when its sender is not one `key` may use: the sender this
    process recorded when it enqueued the task, else the one its intent names (a task enqueued
    from Python), `default` when nothing says."""
    if key.senders is None:  # every sender
        return delivery_status(task_id)
    recorded = enqueuer.sender_of(task_id)
    if recorded is not None and not key.allows(recorded):
        return None
    data = delivery_status(task_id)
    if recorded is None and not key.allows(intent_sender(task_id, data)):
        return None
    return data


async def read(request: Request, key: ApiKey) -> Response:
    receipt = await json_body(request)
    if not isinstance(receipt, dict):
        reason = "a receipt is a JSON object: {'message_id': ..., 'sender': ...}"
        raise Refusal(422, Reason.INVALID, reason, errors=[{"field": "receipt", "reason": reason}])
    sender = receipt.get("sender")
    if not key.allows(sender if isinstance(sender, str) else None):
        raise Refusal(403, Reason.FORBIDDEN, f"this API key may not use sender {sender or 'default'!r}")
    try:
        task_id = await run_in_threadpool(_mark_read, _enqueuer(request), receipt)
    except InvalidIntent as exc:
        raise Refusal(422, Reason.INVALID, str(exc), errors=exc.errors) from None
    except (EnqueueError, RedisError) as exc:
        raise Refusal(503, Reason.NOT_ENQUEUED, str(exc)) from None
    return JSONResponse(
        ReadAccepted(task_id=task_id, status_url=_status_url(request, task_id)).model_dump(), 202
    )


def _mark_read(enqueuer: Enqueuer, receipt: dict[str, Any]) -> str:
    """A read receipt checked, its sender recorded (for status reads), then enqueued."""
    mark_read.check(receipt)
    task_id = uuid()
    enqueuer.record_sender(task_id, receipt.get("sender"))
    return str(mark_read.apply_async(kwargs=receipt, task_id=task_id).id)


async def erase_customer(request: Request, key: ApiKey) -> Response:
    """`wa-dispatch forget` over HTTP, for a key named in DISPATCH_ERASURE_KEYS."""
    if not key.may_erase:
        raise Refusal(403, Reason.FORBIDDEN, NO_ERASURE)
    number = request.path_params["number"]
    refused = bad_number(number)
    if refused is not None:
        raise Refusal(422, Reason.INVALID, refused["error"], errors=refused["errors"])
    e164 = normalize_phone(number)
    eraser = Eraser.of_deployment(request.app.state.settings)
    try:
        report = await run_in_threadpool(eraser.forget, e164)
    except (RedisError, OSError):
        raise Refusal(503, Reason.UNAVAILABLE, "Redis did not answer; repeat the erasure") from None
    done = report.as_dict()
    log.warning("customer_erased", key=key.name, to=mask_phone(e164), removed=sum(report.done.values()))
    return JSONResponse(done)


async def openapi_json(request: Request) -> Response:
    root_path = request.scope.get("root_path", "")
    # Behind a proxy's prefix, "Try it out" (and any client) sends to the prefixed routes.
    return JSONResponse({**openapi(), "servers": [{"url": root_path}]} if root_path else openapi())


async def docs(request: Request) -> Response:
    return HTMLResponse(docs_page(request.scope.get("root_path", "")))


def swagger_ui_files() -> Path:
    """swagger-ui-py's static folder (Swagger UI 5), found without importing the package (its
    __init__ loads its own framework adapters, which this process does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("swagger-ui-py is not installed (a dependency of whatsapp-dispatch)")
    return Path(spec.origin).parent / "static"


def routes() -> list[BaseRoute]:
    return [
        Route("/v1/messages", authorized(send), methods=["POST"]),
        Route("/v1/messages/batch", authorized(send_batch), methods=["POST"]),
        Route(STATUS_PATH, authorized(status), methods=["GET"]),
        Route("/v1/read", authorized(read), methods=["POST"]),
        Route("/v1/customers/{number}", authorized(erase_customer), methods=["DELETE"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Mount(DOCS_STATIC, app=StaticFiles(directory=swagger_ui_files()), name="docs-static"),
    ]
