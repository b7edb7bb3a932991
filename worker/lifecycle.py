"""The workers' lifecycle beside the tasks: crash recovery (worker.recovery), the webhook
applier (worker.statuses) and the consumer's watchdog, hooked to Celery's signals and bootsteps.
Imported by the worker with the tasks (`include` in worker.app), so it is in place before the
worker connects.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import redis
from celery import bootsteps, states
from celery.signals import celeryd_init, task_postrun, worker_ready, worker_shutdown
from celery.worker import state as worker_state

from worker import broker
from worker.app import QUEUES, RELEASED_QUEUE, app
from worker.callbacks.config import CallbacksError
from worker.delivery.parking import RELEASED_HEADER, Parked, Pump
from worker.delivery.senders import SendersError
from worker.ops import metrics
from worker.ops.logs import get_logger, mask_text
from worker.recovery.ledger import queue_lists
from worker.recovery.nodes import NODE, Registry
from worker.recovery.recoverer import Recoverer, unacked_keys
from worker.redis_conn import connect, get_redis
from worker.services import Services, callback_routes, callbacks, dispatcher, ledger, reactions, services
from worker.settings import get_settings
from worker.statuses.apply import Applier
from worker.statuses.consumer import consume
from worker.statuses.inbox import Inbox
from worker.tasks import ENQUEUED_AT
from worker.web.auth import ApiKey, load_keys


def _api_keys(s: Services) -> list[ApiKey]:
    """The API keys, for the callbacks' routes (read only when a callbacks file is set)."""
    return load_keys(s.settings) if callbacks() else []


def _enqueue(name: str, kwargs: dict[str, Any], queue: str | None) -> None:
    app.send_task(name, kwargs=kwargs, queue=queue)


class WebhookApplier(bootsteps.StartStopStep):
    """Every worker drains the webhook inbox in a thread beside its pool (see worker.statuses),
    and POSTs the HTTP callbacks that are due in another (worker.callbacks)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self, parent: Any) -> None:
        s = services()
        applier = Applier(
            s.statuses,
            s.send.windows,
            s.send.dead,
            reactions(s),
            _enqueue,
            callback_routes(s, _api_keys(s)),
            results=s.send.result_document,
            tell_lease=s.settings.tell_lease,
        )
        inbox = Inbox(s.statuses.redis, NODE)
        self.threads = [
            threading.Thread(
                target=consume, args=(inbox, applier, self.stop_event), name="webhook-applier", daemon=True
            ),
            threading.Thread(
                target=dispatcher(s, _api_keys(s)).drain,
                args=(self.stop_event,),
                name="callbacks",
                daemon=True,
            ),
        ]
        for thread in self.threads:
            thread.start()

    def stop(self, parent: Any) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(5)


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
            enqueued = {ENQUEUED_AT: parked.enqueued_at} if parked.enqueued_at is not None else {}
            app.send_task(
                parked.task,
                kwargs=parked.kwargs,
                task_id=task_id,
                queue=RELEASED_QUEUE,
                retries=parked.retries,
                headers={RELEASED_HEADER: "1", **enqueued},
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
        callbacks()  # and every callback's secret: so does a broken callbacks file
    except (SendersError, CallbacksError) as exc:
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


log = get_logger("whatsapp_dispatch.lifecycle")


# --- the consumer's watchdog ---------------------------------------------------------------------

STALL_AFTER = 120.0  # s without a message taken while the queues held work and a thread was free
STALL_CHECK_INTERVAL = 5.0
STALL_EXIT_GRACE = 60.0  # s the warm shutdown may take before the process exits at once


class ConsumerWatchdog:
    """Sees a consumer that takes nothing while its queues hold work and it has room for more.

    Kombu's Redis transport and Celery's consumer recover from every lost connection the tests
    know of (worker.broker settles what one leaves), but a consumer that stops taking messages
    still answers `celery inspect ping`, so a liveness probe would never restart it. Progress is
    a message taken (worker.broker.deliveries), or nothing to take (the queues' lists are empty),
    or no room (as many tasks reserved as the pool has threads). Redis away is not this worker's
    stall: no answer counts as nothing to take."""

    def __init__(
        self,
        queued: Callable[[], int],
        taken: Callable[[], int],
        busy: Callable[[], int],
        capacity: int,
        stall_after: float = STALL_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queued, self.taken, self.busy, self.capacity = queued, taken, busy, capacity
        self.stall_after = stall_after
        self.clock = clock
        self.progress_at = clock()
        self.last_taken = taken()
        self.last_queued = 0

    def check(self) -> float | None:
        """Seconds without progress once that is at least `stall_after`, else None."""
        now, taken = self.clock(), self.taken()
        try:
            self.last_queued = self.queued()
        except redis.RedisError:
            self.last_queued = 0
        if taken != self.last_taken or not self.last_queued or self.busy() >= self.capacity:
            self.progress_at, self.last_taken = now, taken
            return None
        idle = now - self.progress_at
        return idle if idle >= self.stall_after else None


class _Watch:
    def __init__(self, watchdog: ConsumerWatchdog) -> None:
        self.watchdog = watchdog
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="wa-consumer-watchdog", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(STALL_CHECK_INTERVAL):
            idle = self.watchdog.check()
            if idle is None:
                continue
            log.error(
                "consumer_stalled",
                idle_s=round(idle, 1),
                queued=self.watchdog.last_queued,
                reserved=self.watchdog.busy(),
                taken=self.watchdog.last_taken,
                action="exit",
            )
            metrics.CONSUMER_STALLS.labels("exit").inc()
            # A warm shutdown with a failure status, so any supervisor restarts it: the tasks in
            # flight finish, the channel hands the rest back, and a message left unacked returns
            # with this node's set once its heartbeat stops (acks are late: none is lost).
            worker_state.should_stop = 1
            if not self.stop.wait(STALL_EXIT_GRACE):
                log.error("consumer_stalled_exit_now", grace_s=STALL_EXIT_GRACE)
                os._exit(1)
            return


_watches: list[_Watch] = []


def _broker_queued() -> Callable[[], int]:
    """Messages waiting in the lists this worker reads (each queue and its priority lists)."""
    settings = get_settings()
    client = connect(
        settings.celery_broker_url, settings, "CELERY_BROKER_URL", socket_timeout=5, socket_connect_timeout=2
    )
    keys = [key for queue in QUEUES for key in queue_lists(queue)]

    def queued() -> int:
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            return sum(pipe.execute())

    return queued


def _running_tags() -> set[str]:
    """The delivery tags of the tasks the pool is executing now (worker.broker.running)."""
    return {request.message.delivery_tag for request in tuple(worker_state.active_requests)}


@worker_ready.connect
def _start_watchdog(sender: Any = None, **_: Any) -> None:
    if not get_settings().redis_broker:
        return  # RabbitMQ pushes to its consumers; the Redis transport is what this watches
    broker.running = _running_tags
    pool = getattr(sender, "pool", None)
    capacity = int(getattr(pool, "num_processes", None) or app.conf.worker_concurrency or 1)
    watchdog = ConsumerWatchdog(
        _broker_queued(),
        lambda: broker.deliveries.count,
        lambda: len(worker_state.reserved_requests),
        capacity,
    )
    watch = _Watch(watchdog)
    watch.thread.start()
    _watches.append(watch)


@worker_shutdown.connect
def _stop_watchdog(**_: Any) -> None:
    for watch in _watches:
        watch.stop.set()
