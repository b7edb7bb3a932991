"""Celery tasks: glue between a task message and `worker.delivery.send`. Names are a public contract."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from celery import Task, bootsteps
from celery.exceptions import Reject
from celery.result import AsyncResult
from celery.worker.request import Request
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from worker.app import CAMPAIGN_QUEUE, app
from worker.campaigns.fanout import Fanout
from worker.campaigns.runs import RunRef
from worker.delivery.errors import EnqueueError
from worker.delivery.intents import parse_intent, parse_read, validate
from worker.delivery.send import Requeue, deliver_message, deliver_read
from worker.ops.logs import get_logger, mask_phone, mask_text
from worker.services import services
from worker.statuses.apply import Applier, Reactions
from worker.statuses.consumer import consume
from worker.statuses.inbox import Inbox

log = get_logger("whatsapp_dispatch.enqueue")


class MaskedRequest(Request):
    """Task events (what Flower shows) carry results and errors with phone numbers masked."""

    def send_event(self, type: str, **fields: Any) -> None:
        for name in ("result", "exception", "traceback"):
            if isinstance(fields.get(name), str):
                fields[name] = mask_text(fields[name])
        super().send_event(type, **fields)


class ValidatedTask(Task):
    """Refuses a bad intent before anything reaches Redis, and shows Flower masked arguments."""

    Request = MaskedRequest
    validator: Callable[[dict[str, Any]], Any]

    def apply_async(
        self, args: Any = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        if args:
            raise TypeError(f"{self.name} takes keyword arguments only")
        kwargs = kwargs or {}
        type(self).validator(kwargs)
        options.setdefault("kwargsrepr", mask_text(repr(kwargs)))
        try:
            result = super().apply_async(args, kwargs, **options)
        except (OperationalError, RedisError, RuntimeError) as exc:
            # RuntimeError: Celery's Redis result consumer gave up reconnecting before the publish.
            if isinstance(exc, RuntimeError) and "result store" not in str(exc):
                raise
            reason = " ".join(str(exc).split())
            raise EnqueueError(
                f"not enqueued: the broker did not answer ({type(exc).__name__}: {reason})", {"code": None}
            ) from None
        fields = {"to": mask_phone(kwargs["to"]), "type": kwargs.get("type")} if "to" in kwargs else {}
        log.info("enqueued", task_id=result.id, task=self.name, **fields)
        return result


def check_send(kwargs: dict[str, Any]) -> None:
    """An intent, plus the `campaign` a campaign run adds to its recipients' intents."""
    intent = dict(kwargs)
    campaign = intent.pop("campaign", None)
    parse_intent(intent)
    if campaign is not None:
        validate(RunRef, campaign, prefix="campaign.")


@app.task(
    bind=True, base=ValidatedTask, validator=check_send, name="worker.tasks.send_message", max_retries=None
)
def send_message(self: Task, campaign: dict[str, Any] | None = None, **intent: Any) -> dict[str, Any]:
    lane = validate(RunRef, campaign, prefix="campaign.").lane if campaign is not None else None
    try:
        return deliver_message(services().send, intent, self.request.id, self.request.retries, lane)
    except Requeue as requeue:
        raise self.retry(countdown=requeue.countdown, exc=requeue.cause, max_retries=None) from None
    except RedisError as exc:
        # Our state store is unreachable: leave the message to the broker rather than lose it.
        raise Reject(f"redis unavailable: {exc}", requeue=True) from None


@app.task(bind=True, base=ValidatedTask, validator=parse_read, name="worker.tasks.mark_read")
def mark_read(self: Task, **receipt: Any) -> dict[str, Any]:
    return deliver_read(services().send, receipt, task_id=self.request.id)


def _enqueue_chunk(countdown: float, **chunk: Any) -> None:
    send_campaign_chunk.apply_async(kwargs=chunk, countdown=countdown or None)


def _requeue_recipient(intent: dict[str, Any], task_id: str, countdown: float) -> None:
    send_message.apply_async(kwargs=intent, task_id=task_id, countdown=countdown, queue=CAMPAIGN_QUEUE)


def _fanout() -> Fanout:
    return Fanout(services().send, services().runs, _enqueue_chunk, _requeue_recipient)


@app.task(name="worker.tasks.run_campaign")
def run_campaign(name: str, run_id: str | None = None) -> dict[str, Any]:
    """Fired by beat (or `wa-dispatch campaign run`): enqueue the run's chunks."""
    return _fanout().start_run(name, run_id)


@app.task(name="worker.tasks.send_campaign_chunk")
def send_campaign_chunk(name: str, run_id: str, start: int, stop: int) -> dict[str, int]:
    return _fanout().send_chunk(app, name, run_id, start, stop)


@app.task(name="worker.tasks.sweep_campaign_runs")
def sweep_campaign_runs() -> list[dict[str, Any]]:
    """Scheduled by beat every DISPATCH_SWEEP_INTERVAL: resume chunks whose message was lost."""
    return _fanout().resume_stalled()


def _enqueue(name: str, kwargs: dict[str, Any], queue: str | None) -> None:
    app.send_task(name, kwargs=kwargs, queue=queue)


class WebhookApplier(bootsteps.StartStopStep):
    """Every worker drains the webhook inbox in a thread beside its pool (see worker.statuses)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        s = services()
        settings = s.settings
        reactions = Reactions(
            settings.status_task, settings.inbound_task, settings.auto_read, settings.phone_number_id
        )
        applier = Applier(s.statuses, s.send.windows, s.send.dead, reactions, _enqueue)
        inbox = Inbox(s.statuses.redis, f"{socket.gethostname()}-{os.getpid()}")
        self.thread = threading.Thread(
            target=consume, args=(inbox, applier, self.stop_event), name="webhook-applier", daemon=True
        )
        self.thread.start()

    def stop(self, parent: Any) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(5)


app.steps["worker"].add(WebhookApplier)
