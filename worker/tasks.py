"""Celery tasks: glue between a task message and `worker.delivery.send`. Names are a public contract."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from celery import Task, states
from celery.exceptions import Reject, Retry
from celery.result import AsyncResult
from celery.utils import uuid
from celery.worker.request import Request
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from worker.app import CAMPAIGN_QUEUE, app
from worker.campaigns.fanout import Fanout
from worker.campaigns.runs import RunRef
from worker.delivery.errors import EnqueueError
from worker.delivery.intents import parse_intent, parse_read, validate
from worker.delivery.parking import RELEASED_HEADER, Parked
from worker.delivery.send import Requeue, deliver_message, deliver_read
from worker.delivery.senders import DEFAULT, sender_names, unknown_sender
from worker.delivery.templates import TemplateRegistry, sync_registry
from worker.ops.logs import get_logger, mask_phone, mask_text
from worker.recovery.ledger import LedgerEntry
from worker.redis_conn import get_enqueue_redis
from worker.services import ledger, services
from worker.settings import get_settings

log = get_logger("whatsapp_dispatch.enqueue")

# Message header: when the task was first published (unix time). Celery keeps a message's headers
# through self.retry, so a requeued message keeps its first enqueue time.
ENQUEUED_AT = "wa_enqueued_at"


class MaskedRequest(Request):
    """Task events (what Flower shows) carry results and errors with phone numbers masked."""

    def send_event(self, type: str, **fields: Any) -> None:
        for name in ("result", "exception", "traceback"):
            if isinstance(fields.get(name), str):
                fields[name] = mask_text(fields[name])
        super().send_event(type, **fields)


class LedgeredTask(Task):
    """Keyword arguments only; recorded in the intent ledger before it is published (the
    recoverer's second net, worker.recovery.ledger), and settled when it ends; Flower sees masked
    arguments."""

    Request = MaskedRequest

    def check(self, kwargs: dict[str, Any]) -> None:
        """Raise InvalidIntent for arguments the task would refuse."""

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        if args:
            raise TypeError(f"{self.name} takes keyword arguments only")
        kwargs = kwargs or {}
        self.check(kwargs)
        options.setdefault("kwargsrepr", mask_text(repr(kwargs)))
        headers = options.get("headers") or {}
        if ENQUEUED_AT not in headers:
            options["headers"] = {**headers, ENQUEUED_AT: time.time()}
        task_id = options.setdefault("task_id", uuid())
        book = ledger()
        try:
            if book is None or self.app.conf.task_always_eager:  # an eager task is never published
                result = super().apply_async(args, kwargs, **options)
            else:
                with book.recording(
                    task_id,
                    LedgerEntry(
                        self.name, kwargs, self.queue_of(options), eta_of(options), options.get("priority")
                    ),
                ):
                    result = super().apply_async(args, kwargs, **options)
        except (OperationalError, RedisError, RuntimeError) as exc:
            # RuntimeError: Celery's Redis result consumer gave up reconnecting before the publish.
            if isinstance(exc, RuntimeError) and "result store" not in str(exc):
                raise
            if book is not None:
                with suppress(RedisError):
                    book.settle(task_id)  # never published: nothing to recover
            reason = " ".join(str(exc).split())
            raise EnqueueError(
                f"not enqueued: the broker did not answer ({type(exc).__name__}: {reason})", {"code": None}
            ) from None
        fields = {"to": mask_phone(kwargs["to"]), "type": kwargs.get("type")} if "to" in kwargs else {}
        log.info("enqueued", task_id=result.id, task=self.name, **fields)
        return result

    def queue_of(self, options: dict[str, Any]) -> str:
        """The queue a publish goes to (a retry names it by its routing key)."""
        queue = options.get("queue") or options.get("routing_key")
        if queue:
            return str(getattr(queue, "name", queue))
        routes: dict[str, dict[str, str]] = self.app.conf.task_routes or {}
        return routes.get(self.name, {}).get("queue") or self.app.conf.task_default_queue


def eta_of(options: dict[str, Any]) -> float | None:
    if options.get("countdown"):
        return time.time() + float(options["countdown"])
    eta = options.get("eta")
    return eta.timestamp() if isinstance(eta, datetime) else None


class ValidatedTask(LedgeredTask):
    """Refuses a bad intent before anything reaches Redis."""

    validator: Callable[[dict[str, Any]], Any]

    def check(self, kwargs: dict[str, Any]) -> None:
        type(self).validator(kwargs)


def check_sender(name: str | None) -> None:
    """A named sender must be one the deployment knows (DISPATCH_SENDERS, read without any token).
    An intent that names none goes to `default`, which the workers check."""
    known = sender_names(get_settings())
    if name is not None and name not in known:
        raise unknown_sender(name, known)


def check_send(kwargs: dict[str, Any]) -> None:
    """An intent, plus the `campaign` a campaign run adds to its recipients' intents; a template
    intent also against the synced registry (the worker checks again when Redis cannot say now)."""
    intent = dict(kwargs)
    campaign = intent.pop("campaign", None)
    parsed = parse_intent(intent)
    check_sender(parsed.sender)
    if campaign is not None:
        validate(RunRef, campaign, prefix="campaign.")
    if parsed.template is None or parsed.sender not in (None, DEFAULT):
        return  # another sender's templates are checked by the worker, which has its account
    try:
        TemplateRegistry(get_enqueue_redis(), get_settings().waba_id).check(parsed)
    except RedisError:
        log.warning("template_check_skipped", reason="redis unavailable")


def check_read(kwargs: dict[str, Any]) -> None:
    check_sender(parse_read(kwargs).sender)


@app.task(
    bind=True, base=ValidatedTask, validator=check_send, name="worker.tasks.send_message", max_retries=None
)
def send_message(self: Task, campaign: dict[str, Any] | None = None, **intent: Any) -> dict[str, Any]:
    lane = validate(RunRef, campaign, prefix="campaign.").lane if campaign is not None else None
    request = self.request
    released = bool(request.get(RELEASED_HEADER))
    enqueued_at = enqueued_time(request)
    send = services().send
    try:
        result = deliver_message(send, intent, request.id, request.retries, lane, released, enqueued_at)
    except Requeue as requeue:
        if requeue.parked:
            raise park(self, requeue) from None
        raise self.retry(countdown=requeue.countdown, exc=requeue.cause, max_retries=None) from None
    except RedisError as exc:
        # Our state store is unreachable: leave the message to the broker rather than lose it.
        raise Reject(f"redis unavailable: {exc}", requeue=True) from None
    if send.result_document is not None and not result["duplicate"]:
        request.ignore_result = True  # its SUCCESS went with its record (MessageDelivery.succeed)
    return result


def enqueued_time(request: Any) -> float | None:
    """The ENQUEUED_AT header of a task's message: an attribute of the worker's request, in
    `headers` of an eager one; None from a publisher that sets none (an app's own send_task)."""
    value = request.get(ENQUEUED_AT) or (request.get("headers") or {}).get(ENQUEUED_AT)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def park(task: Task, requeue: Requeue) -> Retry:
    """Keep the message in its number's parked line (the pump publishes it again when due) and
    end this delivery as RETRY: the broker message is acknowledged, no thread waits."""
    request = task.request
    parked = Parked(task.name, dict(request.kwargs), request.retries + 1, enqueued_time(request))
    document = services().send.result_document
    retry = document(request.id, requeue.cause, states.RETRY) if document else None
    services().parking.park(request.id, time.time() + requeue.countdown, parked, retry)
    if retry:
        request.ignore_result = True  # its RETRY state went with it: Celery does not store it again
    return Retry(exc=requeue.cause, when=requeue.countdown)


@app.task(bind=True, base=ValidatedTask, validator=check_read, name="worker.tasks.mark_read")
def mark_read(self: Task, **receipt: Any) -> dict[str, Any]:
    return deliver_read(services().send, receipt, task_id=self.request.id)


def _enqueue_chunk(countdown: float, **chunk: Any) -> None:
    send_campaign_chunk.apply_async(kwargs=chunk, countdown=countdown or None)


def _requeue_recipient(intent: dict[str, Any], task_id: str, requeue: Requeue) -> None:
    """A campaign recipient that has to wait: a send_message task with its run as `campaign`,
    parked (recorded in the ledger first, as a publish would be) when it waits for long."""
    if not requeue.parked:
        send_message.apply_async(
            kwargs=intent, task_id=task_id, countdown=requeue.countdown, queue=CAMPAIGN_QUEUE
        )
        return
    book = ledger()
    if book is not None:
        book.record(task_id, LedgerEntry(send_message.name, intent, CAMPAIGN_QUEUE, None))
    due = time.time() + requeue.countdown
    services().parking.park(task_id, due, Parked(send_message.name, intent, 0))


def _fanout() -> Fanout:
    return Fanout(services().send, services().runs, _enqueue_chunk, _requeue_recipient)


@app.task(base=LedgeredTask, name="worker.tasks.run_campaign")
def run_campaign(name: str, run_id: str | None = None) -> dict[str, Any]:
    """Fired by beat (or `wa-dispatch campaign run`): enqueue the run's chunks."""
    return _fanout().start_run(name, run_id)


@app.task(base=LedgeredTask, name="worker.tasks.send_campaign_chunk")
def send_campaign_chunk(name: str, run_id: str, start: int, stop: int) -> dict[str, int]:
    return _fanout().send_chunk(app, name, run_id, start, stop)


@app.task(name="worker.tasks.sweep_campaign_runs")
def sweep_campaign_runs() -> list[dict[str, Any]]:
    """Scheduled by beat every DISPATCH_SWEEP_INTERVAL: resume chunks whose message was lost."""
    return _fanout().resume_stalled()


@app.task(name="worker.tasks.sync_templates")
def sync_templates(name: str | None = None, sender: str | None = None) -> dict[str, Any]:
    """Scheduled by beat every DISPATCH_TEMPLATE_SYNC_INTERVAL with no sender: every account's
    registry (one sender per WABA, as a registry is per WABA). Enqueued with a `sender` and `name`
    when the API refuses that sender's template as stale, or by a template status webhook."""
    send = services().send
    chosen = [sender] if sender is not None else sorted(set(send.accounts().values()))
    synced = []
    for each in map(send.sender, chosen):
        done = sync_registry(each.client, each.templates, each.settings.template_sync_backoff, name)
        synced.append({"sender": each.name, **done})
    return {"synced": synced}
