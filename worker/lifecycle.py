"""The workers' lifecycle beside the tasks: crash recovery (worker.recovery) and the webhook
applier (worker.statuses), hooked to Celery's signals and bootsteps. Imported by the worker with
the tasks (`include` in worker.app), so it is in place before the worker connects.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, ClassVar

from celery import bootsteps, states
from celery.signals import celeryd_init, task_postrun, worker_ready, worker_shutdown

from worker.app import RELEASED_QUEUE, app
from worker.delivery.parking import RELEASED_HEADER, Parked, Pump
from worker.delivery.senders import SendersError
from worker.ops.logs import mask_text
from worker.recovery.nodes import NODE, Registry
from worker.recovery.recoverer import Recoverer, unacked_keys
from worker.redis_conn import get_redis
from worker.services import ledger, reactions, services
from worker.settings import get_settings
from worker.statuses.apply import Applier
from worker.statuses.consumer import consume
from worker.statuses.inbox import Inbox


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
        applier = Applier(s.statuses, s.send.windows, s.send.dead, reactions(s), _enqueue)
        inbox = Inbox(s.statuses.redis, NODE)
        self.thread = threading.Thread(
            target=consume, args=(inbox, applier, self.stop_event), name="webhook-applier", daemon=True
        )
        self.thread.start()

    def stop(self, parent: Any) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(5)


app.steps["worker"].add(WebhookApplier)


# --- crash recovery: Celery's lifecycle -> worker.recovery -------------------------------------


@task_postrun.connect
def _settle(task_id: str, state: str | None = None, **_: Any) -> None:
    """A task that ended leaves the ledger; one handed back (RETRY, a requeue) stays in it."""
    book = ledger()
    if book is not None and state in (states.SUCCESS, states.FAILURE):
        book.settle(task_id, via=get_redis())


def _republish(task_id: str) -> bool:
    """Publish a lost ledgered task again, under its own id and with what is left of its countdown."""
    book = ledger()
    entry = book.entry(task_id) if book is not None else None
    if entry is None:
        return False  # it settled meanwhile
    countdown = max(0.0, entry.eta - time.time()) if entry.eta else None
    task = app.tasks[entry.task]
    task.apply_async(
        kwargs=entry.kwargs, task_id=task_id, queue=entry.queue, countdown=countdown, priority=entry.priority
    )
    return True


def _publish_released(taken: list[tuple[str, Parked]]) -> None:
    """Parked intents back to their queues over one connection, as released (they take a slot).
    Not through the task's apply_async: the intent was checked when it was first enqueued, and
    its ledger entry stands until it settles."""
    with app.producer_or_acquire() as producer:
        for task_id, parked in taken:
            app.send_task(
                parked.task,
                kwargs=parked.kwargs,
                task_id=task_id,
                queue=RELEASED_QUEUE,
                retries=parked.retries,
                headers={RELEASED_HEADER: "1"},
                kwargsrepr=mask_text(repr(parked.kwargs)),
                producer=producer,
            )


_recoverer: list[Recoverer] = []
_pumps: list[Pump] = []


@celeryd_init.connect
def _own_unacked_set(conf: Any = None, **_: Any) -> None:
    """Before the worker connects: its unacknowledged messages go to a set of its own node, so
    they can be put back the moment it is found dead, not after the visibility timeout."""
    settings = get_settings()
    try:
        services()  # every sender, with its token: a broken senders file stops the worker here
    except SendersError as exc:
        raise SystemExit(f"whatsapp-dispatch: cannot start: {exc}") from None
    if conf is not None and settings.redis_broker:
        conf.broker_transport_options = {**conf.broker_transport_options, **unacked_keys(NODE)}
    Registry(get_redis(), settings.heartbeat_timeout).beat(NODE)


GC_YOUNG_THRESHOLD = 10_000  # Python's default is 700


@worker_ready.connect
def _tune_gc(**_: Any) -> None:
    """The objects a worker built to start (modules, the app, the services) move out of the
    collector's sight, and the young generation is collected every 10,000 allocations instead of
    700: otherwise the collector keeps walking startup objects that never die, a cost paid per
    message (measured in docs/architecture.md, "Cost per message, by design")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


@worker_ready.connect
def _start_recoverer(**_: Any) -> None:
    recoverer = Recoverer(app, get_redis(), get_settings(), NODE, _republish)
    recoverer.start()
    _recoverer.append(recoverer)
    book = ledger()
    if book is not None:
        book.watch(RELEASED_QUEUE)  # the pump publishes there without recording each intent again
    pump = Pump(services().parking, _publish_released, time.time, get_settings().slot_max_ahead / 2)
    pump.start()
    _pumps.append(pump)


@worker_shutdown.connect
def _stop_recoverer(**_: Any) -> None:
    for pump in _pumps:
        pump.stop()
    for recoverer in _recoverer:
        recoverer.stop()
