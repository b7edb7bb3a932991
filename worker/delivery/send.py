"""Sending one intent, start to end: claim its key, wait for a slot, call the API, keep the outcome.

The Celery tasks are thin glue around `deliver_message` and `deliver_read`. What to do after a
failure is decided by `policy.decide` (pure); `MessageDelivery` carries it out. `Requeue` is the
only way back to the queue; every final failure is kept both in the idempotency record and in
the dead letters.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import structlog
from celery import states
from prometheus_client import Histogram

from worker.delivery.breaker import Breaker
from worker.delivery.claimslot import ClaimSlot
from worker.delivery.client import ApiResponse, InteraktClient
from worker.delivery.deadletters import DeadLetters
from worker.delivery.errors import (
    THROTTLE_CODES,
    AmbiguousError,
    DispatchError,
    InvalidIntent,
    OptedOutError,
    PairRateLimited,
    TransientError,
    rebuild,
)
from worker.delivery.idempotency import PREFIX as IDEM_PREFIX
from worker.delivery.idempotency import Claim, IdempotencyStore, State, StoredResult
from worker.delivery.intents import MessageIntent, parse_intent, parse_read
from worker.delivery.media import MEDIA_KINDS, MediaLinks
from worker.delivery.optouts import Category, OptOuts, Reason, blocks
from worker.delivery.payloads import message_payload, read_payload
from worker.delivery.policy import (
    Action,
    Decision,
    DeliveryOutcome,
    after_claim,
    after_no_slot,
    after_reach,
    after_window,
    call_with_retry,
    decide,
    parks,
)
from worker.delivery.ratelimit import Line, RateLimiter, Slot, Verdict
from worker.delivery.reach import Reach
from worker.delivery.senders import DEFAULT, unknown_sender
from worker.delivery.templates import STALE_CODES, TemplateRegistry
from worker.delivery.window import CustomerWindows
from worker.ops import metrics
from worker.ops.logs import get_logger, mask_phone
from worker.settings import Settings

log = get_logger("whatsapp_dispatch.delivery")

# Woken this long past our slot (Redis stalled, or the CPU was starved): sending now would bunch
# with the sends of the next slots, so take a fresh slot. Late sends of up to this much put at
# most rate x (1 + STALL_TOLERANCE) into one second: 80 at the reserved 76/s of the 80 tier.
STALL_TOLERANCE = 0.05


class Requeue(Exception):
    """Not a failure: hand the intent back for `countdown` seconds, to the queue, or `parked` in
    its number's line (worker.delivery.parking) when it waits for the number, not for itself."""

    def __init__(self, countdown: float, cause: DispatchError, parked: bool = False) -> None:
        super().__init__(countdown, cause)
        self.countdown = countdown
        self.cause = cause
        self.parked = parked


class Tracked(Exception):
    """An ambiguous outcome that a status webhook had already tied to its key (the tracker): the
    API accepted the request, and the delivery ends as sent with `result`."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result)
        self.result = result


class NoSlot(Exception):
    """The rate limiter or the breaker says: not within DISPATCH_SLOT_MAX_AHEAD."""

    def __init__(self, slot: Slot) -> None:
        super().__init__(slot)
        self.slot = slot


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
    run_id: str = ""


@dataclass(frozen=True)
class SenderServices:
    """One sender's own: its settings (number, account, token, limits), client, limiter, breaker,
    template registry and media links."""

    name: str
    settings: Settings
    client: InteraktClient
    limiter: RateLimiter
    breaker: Breaker
    templates: TemplateRegistry  # its account's templates (waba_id)
    media: MediaLinks  # links uploaded to its number (phone_number_id)
    reach: Reach  # its account's messaging limit (waba_id)


@dataclass(frozen=True)
class SendServices:
    """The per-process collaborators of a delivery (built by `worker.services`): the records and
    dead letters every sender shares, and each sender's own."""

    settings: Settings
    store: IdempotencyStore
    dead: DeadLetters
    windows: CustomerWindows
    senders: dict[str, SenderServices]
    claim_slot: ClaimSlot
    optouts: OptOuts
    # Called with (sender, template name) when the API says that sender's copy is stale (the
    # Celery side enqueues a re-sync of that sender's registry); a no-op by default.
    resync_template: Callable[[str, str], object] = lambda sender, name: None
    # (task id, result, Celery state) -> the task's result document, when the results live in the
    # same Redis as the records: a send's record and its result (or a parked intent and its RETRY)
    # are then one transaction (worker.services).
    result_document: Callable[[str, Any, str], StoredResult] | None = None

    def sender(self, name: str | None) -> SenderServices:
        """The named sender (`default` when none), or InvalidIntent naming the known ones."""
        try:
            return self.senders[name or DEFAULT]
        except KeyError:
            raise unknown_sender(name or DEFAULT, sorted(self.senders)) from None

    def accounts(self) -> dict[str, str]:
        """waba_id -> the first sender (by name) on that account: a template registry is per
        WABA, so one sender of each account syncs it."""
        found: dict[str, str] = {}
        for name, sender in sorted(self.senders.items()):
            found.setdefault(sender.settings.waba_id, name)
        return found


def claim_token(task_id: str) -> str:
    """One delivery's claim owner: its task id, and a token of its own. A message restored from a
    worker that was cut off from Redis is delivered again under the same task id; the token tells
    the two deliveries apart, so the first, back, finds its claim gone and sends nothing."""
    return f"{task_id}:{secrets.token_hex(4)}"


def _bind(task_id: str, task: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=task)


class MessageDelivery:
    """One delivery of one send_message task message."""

    def __init__(
        self,
        services: SendServices,
        kwargs: dict[str, Any],
        task_id: str,
        requeues: int,
        lane: Lane | None = None,
        released: bool = False,
        claim: Claim | None = None,
        slot: Slot | None = None,
        enqueued_at: float | None = None,
        optouts_checked: bool = False,
        owner: str | None = None,
    ) -> None:
        """`claim` and `slot`: taken already with its chunk's (`begin_many`, `acquire_many`), by
        `owner` (else this delivery's own claim token: the task id and a token of its own, since a
        message redelivered to another worker carries the same task id).
        `enqueued_at`: when its message was first published (unix time), if it says.
        `optouts_checked`: its campaign chunk looked its recipient up a moment ago."""
        self.optouts_checked = optouts_checked
        self.services = services
        self.enqueued_at = enqueued_at
        self.claim = claim
        self.reserved = slot
        self.settings = services.settings
        self.kwargs = kwargs
        self.task_id = task_id
        self.requeues = requeues
        self.lane = lane
        self.line = Line.RELEASED if released else Line.NEW
        self.tally = lane.tally if lane else None
        self.key = task_id
        self.owner = owner or claim_token(task_id)
        self.attempts = 0
        self.probe = False
        self.intent: MessageIntent | None = None
        self._sender: SenderServices | None = None  # known once the intent is parsed

    # --- outcomes -------------------------------------------------------------------------------

    def fail(self, exc: DispatchError) -> DispatchError:
        error = {"error": exc.message, **exc.info}
        if isinstance(exc, AmbiguousError) and self.intent is not None:
            self.keep_ambiguous(error)
        elif self.intent is not None:
            self.services.store.failed(self.key, self.attempts, error, tally=self.tally)
        if not isinstance(exc, AmbiguousError) or self.intent is None:
            self.services.dead.add(self.key, self.kwargs, error, self.attempts, self.task_id)
        sender = self._sender.name if self._sender else str(self.kwargs.get("sender"))
        metrics.FAILED.labels(sender, self.kwargs.get("type", "?"), exc.kind, str(exc.code or "")).inc()
        log.error("outcome", outcome=exc.kind, error_code=exc.code, error=exc.message, attempts=self.attempts)
        return exc

    def keep_ambiguous(self, error: dict[str, Any]) -> None:
        """An outcome nobody knows: kept `failed` with what the tracker needs to tie it back, unless
        a status webhook already named this key (raises Tracked: the API accepted it)."""
        intent = self.intent
        assert intent is not None
        origin = {"key": self.key, "to": intent.to, **self.origin(intent)}
        letter = self.services.dead.entry(
            self.key, self.kwargs, error, self.attempts, self.task_id, time.time()
        )
        echoed = self.services.store.ambiguous(self.key, self.attempts, error, origin, letter, self.tally)
        if echoed is None:
            return
        wamid, wa_id = echoed
        result = SendResult(wamid, wa_id, intent.to, intent.type, self.attempts, self.key).as_dict()
        document = self.services.result_document
        if document:  # as a send's goes with its record (the caller does not store it again)
            self.services.store.keep_result(document(self.task_id, result, states.SUCCESS))
        metrics.SENT.labels(self.sender.name, intent.type).inc()
        log.info("outcome", outcome=DeliveryOutcome.TRACKED, wamid=wamid, attempts=self.attempts)
        raise Tracked(result)

    def requeue(self, countdown: float, cause: DispatchError, reason: str, parked: bool = False) -> Requeue:
        self.services.store.release(self.key, self.attempts, self.owner)
        metrics.RETRIES.labels(self.sender.name, reason).inc()
        level = log.info if parked else log.warning
        level("outcome", outcome=reason, countdown=round(countdown, 2), error_code=cause.code, parked=parked)
        return Requeue(countdown, cause, parked)

    @property
    def sender(self) -> SenderServices:
        """The sender this intent goes out through (known once the intent is parsed)."""
        assert self._sender is not None
        return self._sender

    def pause(self, exc: DispatchError) -> Requeue:
        if self.sender.breaker.trip(exc.code, exc.message):
            log.critical(
                "breaker_open",
                error_code=exc.code,
                error=exc.message,
                probe_interval=self.settings.breaker_probe_interval,
            )
        parked = parks(campaign=self.lane is not None)
        return self.requeue(self.settings.breaker_probe_interval, exc, "paused", parked=parked)

    def defer(self, decision: Decision) -> Requeue:
        """Come back later with the record as it is: another delivery's claim, or none taken yet."""
        if decision.parked:
            metrics.RETRIES.labels(self.sender.name, decision.reason).inc()
        countdown = round(decision.countdown, 2)
        log.info("outcome", outcome=decision.reason, countdown=countdown, parked=decision.parked)
        return Requeue(decision.countdown, decision.error, decision.parked)

    def carry(self, decision: Decision) -> Exception:
        """The exception that ends this delivery, as the policy decided."""
        match decision.action:
            case Action.PAUSE:
                return self.pause(decision.error)
            case Action.REQUEUE:
                return self.requeue(decision.countdown, decision.error, decision.reason, decision.parked)
            case Action.DEFER:
                return self.defer(decision)
        return self.fail(decision.error)

    def carry_out(self, exc: DispatchError) -> Exception:
        """The exception that ends this delivery after `exc`, as `policy.decide` says."""
        return self.carry(decide(exc, self.attempts, self.requeues, self.settings))

    def replay(self, claim: Claim, intent: MessageIntent) -> dict[str, Any]:
        """The key already finished: return its kept outcome without calling the API."""
        if claim.state is State.FAILED:
            log.info("outcome", outcome=DeliveryOutcome.DUPLICATE_FAILURE, error_code=claim.error.get("code"))
            raise rebuild(claim.error)
        wamid, wa_id = claim.record["wamid"], claim.record.get("wa_id") or None
        result = SendResult(wamid, wa_id, intent.to, intent.type, claim.attempts, self.key, duplicate=True)
        log.info("outcome", outcome=DeliveryOutcome.DUPLICATE, wamid=result.wamid)
        return result.as_dict()

    # --- one HTTP attempt -----------------------------------------------------------------------

    def reserve(self, to: str) -> Slot:
        """A granted rate-limit slot, or NoSlot. A campaign lane reserves only a short way ahead
        (leaving the rest for transactional messages), so its sends wait here for their turn, up
        to DISPATCH_INLINE_MAX_WAIT."""
        lane = self.lane.name if self.lane else None
        deadline = time.monotonic() + self.settings.inline_max_wait
        record = IDEM_PREFIX + self.key
        limiter = self.sender.limiter
        slot, self.reserved = self.reserved or limiter.acquire(to, lane, record, self.line, self.owner), None
        while lane and slot.verdict is Verdict.LATER and time.monotonic() + slot.wait < deadline:
            time.sleep(max(0.0, slot.wait - limiter.lane_horizon / 2))
            slot = limiter.acquire(to, lane, record, owner=self.owner)
        if not slot.granted:
            raise NoSlot(slot)
        return slot

    def wait_for_slot(self, to: str) -> Slot:
        """Reserve a slot, sleep until it is due, and mark the record `sending`."""
        while True:
            slot = self.reserve(to)
            self.line = Line.RELEASED  # it had its turn: a retry or a fresh slot does not queue again
            wait = slot.due - time.monotonic()
            metrics.RATE_WAIT.observe(max(0.0, wait))
            if wait > 0:
                time.sleep(wait)
            self.probe = self.probe or slot.verdict is Verdict.PROBE
            if not slot.marked_sending and not self.services.store.sending(self.key, self.owner):
                raise NoSlot(Slot(Verdict.LOST, 0.0))  # taken over: the other delivery sends
            if time.monotonic() - slot.due < STALL_TOLERANCE:
                return slot

    def send(self, to: str, payload: dict[str, Any], slot: Slot) -> ApiResponse:
        """One HTTP attempt; what the API said about its limits goes to the shared limiter."""
        self.attempts += 1
        structlog.contextvars.bind_contextvars(attempt=self.attempts)
        if self.attempts == 1:
            self.since_enqueue(metrics.ENQUEUE_TO_FIRST_ATTEMPT, bind=True)
        started = time.perf_counter()
        slot_wait_ms = round(slot.wait * 1000, 1)
        try:
            resp = self.sender.client.post(payload)
        except DispatchError as exc:
            latency = time.perf_counter() - started
            metrics.API_LATENCY.labels(self.sender.name, exc.kind).observe(latency, self.exemplar)
            metrics.API_ERRORS.labels(self.sender.name, exc.kind, str(exc.code or "")).inc()
            log.warning(
                "attempt",
                outcome=exc.kind,
                http_status=exc.info.get("http_status"),
                error_code=exc.code,
                latency_ms=round(latency * 1000, 1),
                error=exc.message,
                slot_wait_ms=slot_wait_ms,
            )
            self.feedback(exc, to)
            raise
        metrics.API_LATENCY.labels(self.sender.name, DeliveryOutcome.OK).observe(
            resp.latency_ms / 1000, self.exemplar
        )
        log.info(
            "attempt",
            outcome=DeliveryOutcome.OK,
            http_status=resp.http_status,
            latency_ms=round(resp.latency_ms, 1),
            slot_wait_ms=slot_wait_ms,
        )
        return resp

    @property
    def exemplar(self) -> dict[str, str]:
        """What an observation carries to find its message: the task id."""
        return {"task_id": self.task_id}

    def since_enqueue(self, histogram: Histogram, bind: bool = False) -> None:
        """Observe the time since the message was published, for a message enqueued one by one
        (a campaign's recipients go at their run's pace); `bind`: and log it as `queued_ms`."""
        if self.enqueued_at is None or self.lane is not None or self.intent is None:
            return
        elapsed = max(0.0, time.time() - self.enqueued_at)
        histogram.labels(self.sender.name, self.intent.type).observe(elapsed, self.exemplar)
        if bind:
            structlog.contextvars.bind_contextvars(queued_ms=round(elapsed * 1000, 1))

    def feedback(self, exc: DispatchError, to: str) -> None:
        """Tell the shared limiter what the API said, so every worker slows down, not just this one."""
        if isinstance(exc, PairRateLimited):
            self.sender.limiter.block_pair(to, exc.retry_after)
        elif isinstance(exc, TransientError) and (
            exc.code in THROTTLE_CODES or (exc.code is None and exc.info.get("http_status") == 429)
        ):
            factor = self.sender.limiter.slow_down(exc.retry_after)
            log.warning(
                "throttled", error_code=exc.code, retry_after=exc.retry_after, rate_factor=round(factor, 3)
            )

    # --- the whole delivery ---------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        # A fresh log context: a campaign chunk's pool thread runs one recipient after another,
        # and a line must never carry the previous recipient's number or attempt.
        _bind(self.task_id, "send_message")
        try:
            return self.deliver()
        except Tracked as tracked:
            return tracked.result

    def deliver(self) -> dict[str, Any]:
        try:
            intent = parse_intent(self.kwargs)
            self._sender = self.services.sender(intent.sender)
            self._sender.templates.check(intent)
        except InvalidIntent as exc:  # apps that enqueue by name skip the enqueue-time check
            raise self.fail(exc) from None
        self.key = intent.idempotency_key or self.task_id
        structlog.contextvars.bind_contextvars(
            to=mask_phone(intent.to), type=intent.type, idempotency_key=self.key, sender=self.sender.name
        )

        self.wait_for_room(intent)
        claim = self.claim or self.take_claim(intent)
        self.intent = intent
        self.attempts = claim.attempts
        self.check_claim(claim)
        if claim.state in (State.SENT, State.FAILED):
            return self.replay(claim, intent)
        self.check_optout(intent)
        if self.settings.window_check:
            last = self.services.windows.last_inbound(self.sender.settings.phone_number_id, intent.to)
            closed = after_window(intent.type, last, time.time())
            if closed:
                raise self.carry(closed)

        try:  # a link to upload first: fetched and uploaded once, then sent by id
            intent = self.sender.media.resolve(intent)
        except DispatchError as exc:
            raise self.carry_out(exc) from None
        payload = message_payload(intent, key=self.key)  # the tracker names the key
        try:
            resp = call_with_retry(
                lambda: self.send(intent.to, payload, self.wait_for_slot(intent.to)), self.settings
            )
        except NoSlot as exc:
            decision = after_no_slot(
                exc.slot.verdict,
                exc.slot.wait,
                campaign=self.lane is not None,
                heartbeat_timeout=self.services.store.heartbeat_timeout,
            )
            raise self.carry(decision) from None
        except DispatchError as exc:
            self.template_refused(exc, intent)
            self.stopped_marketing(exc, intent.to)
            raise self.carry_out(exc) from None
        return self.succeed(resp, intent)

    def take_claim(self, intent: MessageIntent) -> Claim:
        """Claim the key. Where nothing has to happen between the claim and the slot (no window
        check, no media to upload, no campaign lane), the slot comes in the same round trip."""
        store, take_over = self.services.store, self.settings.at_least_once
        if self.lane or self.settings.window_check or intent.type in MEDIA_KINDS or intent.template:
            return store.begin(self.key, self.owner, take_over_stale=take_over)
        claim, self.reserved = self.services.claim_slot.take(
            store,
            self.sender.limiter,
            self.key,
            owner=self.owner,
            to=intent.to,
            line=self.line,
            take_over_stale=take_over,
            max_age=self.settings.max_age,
        )
        return claim

    def wait_for_room(self, intent: MessageIntent) -> None:
        """A campaign's template beyond the account's messaging limit waits, parked, until room
        frees (reach.py). Checked before the claim, so a wait of hours is not an age
        (DISPATCH_MAX_AGE) and leaves the record as it was."""
        if intent.type != "template":
            return
        full = after_reach(self.sender.reach.admit(intent.to, self.tally), self.sender.settings.daily_limit)
        if full:
            raise self.carry(full)

    def check_optout(self, intent: MessageIntent) -> None:
        """A campaign message or a marketing template to a customer who opted out fails here,
        unsent, saying why and since when (`optouts.blocks`). Looked up only for those two."""
        template = intent.template
        category = self.sender.templates.category(template.name, template.language.code) if template else None
        campaign = self.lane is not None
        if self.optouts_checked or not (campaign or (category or "").upper() == Category.MARKETING):
            return
        opted = self.services.optouts.check([intent.to]).get(intent.to)
        reason = blocks(opted, category, campaign)
        if reason and opted:
            raise self.fail(
                OptedOutError(
                    reason,
                    {
                        "code": None,
                        "title": "opted out",
                        "reason": opted.reason.value,
                        "opted_out_at": opted.at,
                        "category": category,
                    },
                )
            )

    def stopped_marketing(self, exc: DispatchError, to: str) -> None:
        """A 131050 (the customer stopped marketing messages) is an opt-out, kept for the next."""
        title = f"131050 {exc.info.get('title') or ''}".strip()
        if exc.code == 131050 and self.services.optouts.record(to, Reason.META_131050, detail=title):
            log.warning("optout_recorded", reason=Reason.META_131050)

    def template_refused(self, exc: DispatchError, intent: MessageIntent) -> None:
        """A 132000/132001/132012 means the registry's copy of the template is wrong: mark it stale
        (no longer checked against) and ask for a re-sync, at most once a minute per template."""
        template = intent.template
        if template is None or exc.code not in STALE_CODES:
            return
        interval = self.settings.template_resync_min_interval
        if self.sender.templates.mark_stale(template.name, template.language.code, interval):
            log.warning("template_stale", template=template.name, error_code=exc.code)
            self.services.resync_template(self.sender.name, template.name)

    def check_claim(self, claim: Claim) -> None:
        """Raise when this delivery must not send: busy elsewhere, lost mid-request, or too old."""
        heartbeat_timeout = self.services.store.heartbeat_timeout
        found = after_claim(claim.state, claim.created, time.time(), heartbeat_timeout, self.settings.max_age)
        if found:
            raise self.carry(found)

    def origin(self, intent: MessageIntent) -> dict[str, str]:
        """What the wamid index keeps, so a status webhook finds the intent (and can re-drive it)."""
        run = {"campaign": self.lane.name, "run_id": self.lane.run_id} if self.lane else {}
        return {
            "task_id": self.task_id,
            "type": intent.type,
            "sender": self.sender.name,
            "intent": json.dumps(self.kwargs),
            **run,
        }

    def succeed(self, resp: ApiResponse, intent: MessageIntent) -> dict[str, Any]:
        if not resp.wamid:
            raise self.fail(AmbiguousError("the API answered 2xx without a wamid", {"body": resp.body}))
        result = SendResult(resp.wamid, resp.wa_id, intent.to, intent.type, self.attempts, self.key).as_dict()
        document = self.services.result_document
        self.services.store.sent(
            self.key,
            attempts=self.attempts,
            wamid=resp.wamid,
            wa_id=resp.wa_id,
            to=intent.to,
            tally=self.tally,
            origin=self.origin(intent),
            result=document(self.task_id, result, states.SUCCESS) if document else None,
        )
        if self.probe and self.sender.breaker.close():
            log.warning("breaker_closed", wamid=resp.wamid)
        metrics.SENT.labels(self.sender.name, intent.type).inc()
        self.since_enqueue(metrics.ENQUEUE_TO_WAMID)
        log.info("outcome", outcome=DeliveryOutcome.SENT, wamid=resp.wamid, attempts=self.attempts)
        return result


def deliver_message(
    services: SendServices,
    kwargs: dict[str, Any],
    task_id: str,
    requeues: int,
    lane: Lane | None = None,
    released: bool = False,
    enqueued_at: float | None = None,
) -> dict[str, Any]:
    """Send one message intent; return the SendResult dict, raise DispatchError or Requeue.
    `released`: it comes back from its number's parked line, so it takes the next slot.
    `enqueued_at`: when it was first published (unix time), for the latency histograms."""
    return MessageDelivery(services, kwargs, task_id, requeues, lane, released, enqueued_at=enqueued_at).run()


def deliver_read(services: SendServices, kwargs: dict[str, Any], task_id: str) -> dict[str, Any]:
    """Mark an incoming message as read; harmless to repeat, so no idempotency record is kept."""
    _bind(task_id, "mark_read")
    receipt = parse_read(kwargs)
    sender = services.sender(receipt.sender)
    attempts = 0

    def attempt() -> ApiResponse:
        nonlocal attempts
        attempts += 1
        return sender.client.post(read_payload(receipt))

    try:
        resp = call_with_retry(attempt, services.settings)
    except DispatchError as exc:
        log.error("outcome", outcome=exc.kind, error_code=exc.code, error=exc.message, attempts=attempts)
        raise
    log.info("outcome", outcome=DeliveryOutcome.READ, message_id=receipt.message_id, attempts=attempts)
    return {"success": bool(resp.body.get("success")), "message_id": receipt.message_id, "attempts": attempts}
