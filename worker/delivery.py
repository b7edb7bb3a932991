"""Sending one intent, start to end: claim its key, take a rate-limit slot, call the API, keep the outcome.

The Celery tasks are thin glue around `deliver_message` and `deliver_read`; every decision
(send or not, retry now, requeue later, pause the number, fail for good) is made here so it
reads in one place. `Requeue` is the only way back to the queue; every final failure is kept
both in the idempotency record and in the dead letters.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from worker import metrics
from worker.breaker import Breaker
from worker.client import ApiResponse, InteraktClient
from worker.deadletters import DeadLetters
from worker.errors import (
    THROTTLE_CODES,
    AccountError,
    AmbiguousError,
    ApiError,
    DispatchError,
    ExpiredError,
    InvalidIntent,
    PairRateLimited,
    RetriesExhausted,
    TransientError,
)
from worker.idempotency import PREFIX as IDEM_PREFIX
from worker.idempotency import Claim, IdempotencyStore
from worker.intents import MessageIntent, parse_intent, parse_read
from worker.logging import get_logger, mask_phone
from worker.payloads import message_payload, read_payload
from worker.ratelimit import RateLimiter, Slot
from worker.retry import call_with_retry, requeue_countdown
from worker.settings import Settings

log = get_logger("whatsapp_dispatch.delivery")


class Requeue(Exception):
    """Not a failure: hand the intent back to the queue for `countdown` seconds."""

    def __init__(self, countdown: float, cause: DispatchError) -> None:
        super().__init__(countdown, cause)
        self.countdown = countdown
        self.cause = cause


class NoSlot(Exception):
    """The rate limiter or the breaker says: not within DISPATCH_INLINE_MAX_WAIT."""

    def __init__(self, verdict: str, wait: float) -> None:
        super().__init__(verdict, wait)
        self.verdict = verdict
        self.wait = wait


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


@dataclass(frozen=True)
class Lane:
    """A bulk sender's share of the number (a campaign run), passed as data with its intents:
    the limiter lane its slots come from, and the counters hash its outcomes are tallied in."""

    name: str
    tally: str


@dataclass(frozen=True)
class SendServices:
    """The per-process collaborators of a delivery (built by `worker.services`)."""

    settings: Settings
    client: InteraktClient
    store: IdempotencyStore
    limiter: RateLimiter
    breaker: Breaker
    dead: DeadLetters


def _bind(task_id: str, task: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task)


def _rebuild(error: dict[str, Any]) -> DispatchError:
    """The exception a kept failure was, from its stored data."""
    classes = [DispatchError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    by_kind = {cls.kind: cls for cls in classes}
    info = {k: v for k, v in error.items() if k != "error"}
    return by_kind.get(info.get("kind"), DispatchError)(error.get("error", "failed"), info)


class MessageDelivery:
    """One delivery of one send_message task message."""

    def __init__(
        self, s: SendServices, kwargs: dict[str, Any], task_id: str, requeues: int, lane: Lane | None = None
    ) -> None:
        self.s = s
        self.kwargs = kwargs
        self.task_id = task_id
        self.requeues = requeues
        self.lane = lane
        self.tally = lane.tally if lane else None
        self.key = task_id
        self.attempts = 0
        self.probe = False
        self.intent: MessageIntent | None = None

    # --- outcomes -------------------------------------------------------------------------------

    def fail(self, exc: DispatchError) -> DispatchError:
        error = {"error": exc.message, **exc.info}
        if self.intent is not None:
            self.s.store.failed(self.key, self.attempts, error, tally=self.tally)
        self.s.dead.add(self.key, self.kwargs, error, self.attempts, self.task_id)
        metrics.FAILED.labels(self.kwargs.get("type", "?"), exc.kind, str(exc.code or "")).inc()
        log.error("outcome", outcome=exc.kind, error_code=exc.code, error=exc.message, attempts=self.attempts)
        return exc

    def requeue(self, countdown: float, cause: DispatchError, outcome: str) -> Requeue:
        self.s.store.release(self.key, self.attempts)
        metrics.RETRIES.labels(outcome).inc()
        log.warning("outcome", outcome=outcome, countdown=round(countdown, 2), error_code=cause.code)
        return Requeue(countdown, cause)

    def replay(self, claim: Claim, intent: MessageIntent) -> dict[str, Any]:
        """The key already finished: return its kept outcome without calling the API."""
        if claim.state == "failed":
            log.info("outcome", outcome="duplicate_failure", error_code=claim.error.get("code"))
            raise _rebuild(claim.error)
        result = SendResult(claim.record["wamid"], claim.record.get("wa_id") or None, intent.to, intent.type,
                            claim.attempts, self.key, duplicate=True)  # fmt: skip
        log.info("outcome", outcome="duplicate", wamid=result.wamid)
        return result.as_dict()

    # --- one HTTP attempt -----------------------------------------------------------------------

    def slot(self, to: str) -> Slot:
        """A rate-limit slot. A campaign lane reserves only a short way ahead (leaving the rest for
        transactional messages), so its sends wait here for their turn, up to DISPATCH_INLINE_MAX_WAIT."""
        lane = self.lane.name if self.lane else None
        deadline = time.monotonic() + self.s.settings.inline_max_wait
        record = IDEM_PREFIX + self.key
        slot = self.s.limiter.acquire(to, lane, record)
        while lane and slot.verdict == "later" and time.monotonic() + slot.wait < deadline:
            time.sleep(max(0.0, slot.wait - self.s.settings.lane_max_ahead / 2))
            slot = self.s.limiter.acquire(to, lane, record)
        if not slot.granted:
            raise NoSlot(slot.verdict, slot.wait)
        return slot

    def attempt(self, to: str, payload: dict[str, Any]) -> ApiResponse:
        while True:
            slot = self.slot(to)
            due = time.monotonic() + slot.wait
            metrics.RATE_WAIT.observe(slot.wait)
            if slot.wait > 0:
                time.sleep(slot.wait)
            self.probe = self.probe or slot.verdict == "probe"
            if not slot.marked_sending:
                self.s.store.sending(self.key)
            if time.monotonic() - due < 0.25:
                break  # else Redis stalled us past our slot (a restart): sending now would overrun the limit
        self.attempts += 1
        structlog.contextvars.bind_contextvars(attempt=self.attempts)
        started = time.perf_counter()
        try:
            resp = self.s.client.post(payload)
        except DispatchError as exc:
            metrics.API_LATENCY.labels(exc.kind).observe(time.perf_counter() - started)
            log.warning("attempt", outcome=exc.kind, http_status=exc.info.get("http_status"), error_code=exc.code,
                        latency_ms=round((time.perf_counter() - started) * 1000, 1), error=exc.message,
                        slot_wait_ms=round(slot.wait * 1000, 1))  # fmt: skip
            self.feedback(exc, to)
            raise
        metrics.API_LATENCY.labels("ok").observe(resp.latency_ms / 1000)
        log.info("attempt", outcome="ok", http_status=resp.http_status, latency_ms=round(resp.latency_ms, 1),
                 slot_wait_ms=round(slot.wait * 1000, 1))  # fmt: skip
        return resp

    def feedback(self, exc: DispatchError, to: str) -> None:
        """Tell the shared limiter what the API said, so every worker slows down, not just this one."""
        if isinstance(exc, PairRateLimited):
            self.s.limiter.block_pair(to, exc.retry_after)
        elif isinstance(exc, TransientError) and (
            exc.code in THROTTLE_CODES or (exc.code is None and exc.info.get("http_status") == 429)
        ):
            factor = self.s.limiter.slow_down(exc.retry_after)
            log.warning("throttled", error_code=exc.code, retry_after=exc.retry_after, rate_factor=round(factor, 3))

    # --- the whole delivery ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        settings = self.s.settings
        try:
            intent = parse_intent(self.kwargs)
        except InvalidIntent as exc:  # apps that enqueue by name skip the enqueue-time check
            raise self.fail(exc) from None
        self.key = intent.idempotency_key or self.task_id
        structlog.contextvars.bind_contextvars(to=mask_phone(intent.to), type=intent.type, idempotency_key=self.key)

        claim = self.s.store.begin(self.key, self.task_id, take_over_stale=settings.at_least_once)
        self.intent = intent
        self.attempts = claim.attempts
        if claim.state in ("sent", "failed"):
            return self.replay(claim, intent)
        if claim.state == "busy":
            log.info("outcome", outcome="in_flight_elsewhere")
            raise Requeue(self.s.store.stale_after / 4, DispatchError("in flight in another delivery", {"kind": "busy"}))
        if claim.state == "stale":
            lost = AmbiguousError("a worker stopped while this message was being sent: it may have been delivered",
                                  {"code": None, "title": "worker lost mid-request"})  # fmt: skip
            raise self.fail(lost)
        if time.time() - claim.created > settings.max_age:
            raise self.fail(ExpiredError(f"not sent within DISPATCH_MAX_AGE={settings.max_age:g}s", {}))

        payload = message_payload(intent)
        try:
            resp = call_with_retry(lambda: self.attempt(intent.to, payload), settings)
        except NoSlot as exc:
            paused = exc.verdict == "paused"
            cause = DispatchError("sending paused for this number" if paused else "rate limited", {"kind": exc.verdict})
            raise self.requeue(exc.wait, cause, "paused" if paused else "rate_limited") from None
        except AccountError as exc:
            if self.s.breaker.trip(exc.code, exc.message):
                log.critical("breaker_open", error_code=exc.code, error=exc.message,
                             probe_interval=settings.breaker_probe_interval)  # fmt: skip
            raise self.requeue(settings.breaker_probe_interval, exc, "paused") from None
        except TransientError as exc:
            if self.attempts >= settings.max_attempts:
                exhausted = RetriesExhausted(f"gave up after {self.attempts} attempts: {exc.message}", exc.info)
                raise self.fail(exhausted) from None
            raise self.requeue(requeue_countdown(exc, self.requeues, settings), exc, "requeued") from None
        except AmbiguousError as exc:
            if settings.at_least_once:
                raise self.requeue(settings.requeue_backoff, exc, "requeued_ambiguous") from None
            raise self.fail(exc) from None
        except ApiError as exc:
            raise self.fail(exc) from None
        return self.succeed(resp, intent)

    def succeed(self, resp: ApiResponse, intent: MessageIntent) -> dict[str, Any]:
        if not resp.wamid:
            raise self.fail(AmbiguousError("the API answered 2xx without a wamid", {"body": resp.body}))
        self.s.store.sent(self.key, self.attempts, resp.wamid, resp.wa_id, intent.to, tally=self.tally)
        if self.probe and self.s.breaker.close():
            log.warning("breaker_closed", wamid=resp.wamid)
        metrics.SENT.labels(intent.type).inc()
        log.info("outcome", outcome="sent", wamid=resp.wamid, attempts=self.attempts)
        return SendResult(resp.wamid, resp.wa_id, intent.to, intent.type, self.attempts, self.key).as_dict()


def deliver_message(
    s: SendServices, kwargs: dict[str, Any], task_id: str, requeues: int, lane: Lane | None = None
) -> dict[str, Any]:
    """Send one message intent; return the SendResult dict, raise DispatchError or Requeue."""
    _bind(task_id, "send_message")
    return MessageDelivery(s, kwargs, task_id, requeues, lane).run()


def deliver_read(s: SendServices, kwargs: dict[str, Any], task_id: str) -> dict[str, Any]:
    """Mark an incoming message as read; harmless to repeat, so no idempotency record is kept."""
    _bind(task_id, "mark_read")
    receipt = parse_read(kwargs)
    attempts = [0]

    def attempt() -> ApiResponse:
        attempts[0] += 1
        return s.client.post(read_payload(receipt))

    try:
        resp = call_with_retry(attempt, s.settings)
    except DispatchError as exc:
        log.error("outcome", outcome=exc.kind, error_code=exc.code, error=exc.message, attempts=attempts[0])
        raise
    log.info("outcome", outcome="read", message_id=receipt.message_id, attempts=attempts[0])
    return {"success": bool(resp.body.get("success")), "message_id": receipt.message_id, "attempts": attempts[0]}
