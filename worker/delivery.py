"""Sending one intent: claim its idempotency key, call the API with retries, keep the outcome.

The Celery tasks are thin glue around `deliver_message` and `deliver_read`; all decisions
(send or not, retry now, requeue later, fail for good) are made here, so they can be read
in one place and the task stays a function of its arguments.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from worker.client import ApiResponse, get_client
from worker.errors import (
    AmbiguousError,
    ApiError,
    DispatchError,
    ExpiredError,
    InvalidIntent,
    RetriesExhausted,
    TransientError,
)
from worker.idempotency import Claim, get_store
from worker.intents import parse_intent, parse_read
from worker.logging import get_logger, mask_phone
from worker.payloads import message_payload, read_payload
from worker.retry import call_with_retry, requeue_countdown
from worker.settings import get_settings

log = get_logger("whatsapp_dispatch.delivery")


class Requeue(Exception):
    """Not a failure: hand the intent back to the queue for `countdown` seconds."""

    def __init__(self, countdown: float, cause: DispatchError) -> None:
        super().__init__(countdown, cause)
        self.countdown = countdown
        self.cause = cause


@dataclass(frozen=True)
class SendResult:
    wamid: str
    wa_id: str | None
    to: str
    type: str
    attempts: int
    idempotency_key: str
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attempting(call: Any) -> tuple[Any, list[int]]:
    """Wrap an API call so each try is logged and counted."""
    counter = [0]

    def attempt() -> ApiResponse:
        counter[0] += 1
        structlog.contextvars.bind_contextvars(attempt=counter[0])
        started = time.perf_counter()
        try:
            resp = call()
        except DispatchError as exc:
            log.warning(
                "attempt",
                outcome=exc.kind,
                http_status=exc.info.get("http_status"),
                error_code=exc.code,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                error=exc.message,
            )
            raise
        log.info("attempt", outcome="ok", http_status=resp.http_status, latency_ms=round(resp.latency_ms, 1))
        return resp

    return attempt, counter


def _fail(exc: DispatchError, key: str, attempts: int) -> DispatchError:
    get_store().failed(key, attempts, {"error": exc.message, **exc.info})
    log.error("outcome", outcome=exc.kind, error_code=exc.code, error=exc.message, attempts=attempts)
    return exc


def _replay(claim: Claim, key: str, intent_to: str, intent_type: str, task_id: str) -> dict[str, Any]:
    """A key already finished: return its kept outcome without calling the API."""
    if claim.state == "sent":
        result = SendResult(
            wamid=claim.record["wamid"],
            wa_id=claim.record.get("wa_id") or None,
            to=intent_to,
            type=intent_type,
            attempts=claim.attempts,
            idempotency_key=key,
            duplicate=True,
        )
        log.info("outcome", outcome="duplicate", wamid=result.wamid)
        return result.as_dict()
    error = claim.error
    log.info("outcome", outcome="duplicate_failure", error_code=error.get("code"))
    raise _rebuild(error)


def _rebuild(error: dict[str, Any]) -> DispatchError:
    kinds = {cls.kind: cls for cls in _all_subclasses(DispatchError)}
    info = {k: v for k, v in error.items() if k != "error"}
    return kinds.get(info.get("kind"), DispatchError)(error.get("error", "failed"), info)


def _all_subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _all_subclasses(sub)]


def deliver_message(kwargs: dict[str, Any], task_id: str, requeues: int) -> dict[str, Any]:
    """Send one message intent; return the SendResult dict, raise DispatchError or Requeue."""
    settings = get_settings()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task="send_message")
    try:
        intent = parse_intent(kwargs)
    except InvalidIntent as exc:  # apps that enqueue by name skip the enqueue-time check
        log.error("outcome", outcome=exc.kind, error=exc.message)
        raise
    key = intent.idempotency_key or task_id
    structlog.contextvars.bind_contextvars(to=mask_phone(intent.to), type=intent.type, idempotency_key=key)

    store = get_store()
    claim = store.begin(key, task_id)
    if claim.state in ("sent", "failed"):
        return _replay(claim, key, intent.to, intent.type, task_id)
    if claim.state == "busy":
        # Another delivery of this key is mid-request: look again once it must have finished.
        log.info("outcome", outcome="in_flight_elsewhere")
        raise Requeue(store.stale_after / 4, DispatchError("in flight in another delivery", {"kind": "busy"}))
    if claim.state == "stale" and not settings.at_least_once:
        raise _fail(
            AmbiguousError(
                "a worker stopped while this message was being sent: it may have been delivered",
                {"code": None, "title": "worker lost mid-request"},
            ),
            key,
            claim.attempts,
        )
    attempts = claim.attempts
    if time.time() - claim.created > settings.max_age:
        raise _fail(ExpiredError(f"not sent within DISPATCH_MAX_AGE={settings.max_age:g}s", {}), key, attempts)

    payload = message_payload(intent)
    attempt, counter = _attempting(lambda: get_client().post(payload))
    try:
        resp = call_with_retry(attempt, settings)
    except TransientError as exc:
        attempts += counter[0]
        if attempts >= settings.max_attempts:
            exhausted = RetriesExhausted(f"gave up after {attempts} attempts: {exc.message}", exc.info)
            raise _fail(exhausted, key, attempts) from None
        store.release(key, attempts)
        countdown = requeue_countdown(exc, requeues, settings)
        log.warning("outcome", outcome="requeued", countdown=round(countdown, 2), error_code=exc.code)
        raise Requeue(countdown, exc) from None
    except AmbiguousError as exc:
        attempts += counter[0]
        if settings.at_least_once:
            store.release(key, attempts)
            log.warning("outcome", outcome="requeued_ambiguous")
            raise Requeue(settings.requeue_backoff, exc) from None
        raise _fail(exc, key, attempts) from None
    except ApiError as exc:
        raise _fail(exc, key, attempts + counter[0]) from None
    attempts += counter[0]
    if not resp.wamid:
        raise _fail(AmbiguousError("the API answered 2xx without a wamid", {"body": resp.body}), key, attempts)
    store.sent(key, attempts, resp.wamid, resp.wa_id, intent.to)
    result = SendResult(resp.wamid, resp.wa_id, intent.to, intent.type, attempts, key)
    log.info("outcome", outcome="sent", wamid=resp.wamid, attempts=attempts)
    return result.as_dict()


def deliver_read(kwargs: dict[str, Any], task_id: str) -> dict[str, Any]:
    """Mark an incoming message as read; idempotent on Meta's side, so no record is kept."""
    settings = get_settings()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task="mark_read")
    receipt = parse_read(kwargs)
    attempt, counter = _attempting(lambda: get_client().post(read_payload(receipt)))
    try:
        resp = call_with_retry(attempt, settings)
    except DispatchError as exc:
        log.error("outcome", outcome=exc.kind, error_code=exc.code, error=exc.message)
        raise
    log.info("outcome", outcome="read", message_id=receipt.message_id)
    return {"success": bool(resp.body.get("success")), "message_id": receipt.message_id, "attempts": counter[0]}
