"""The Celery application: broker and results on Redis, acks after the work, JSON only."""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging

from worker import logging as wa_logging
from worker.settings import get_settings

QUEUE = "whatsapp"


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("worker", broker=settings.celery_broker_url, backend=settings.celery_result_backend)
    app.conf.update(
        include=["worker.tasks"],
        task_default_queue=QUEUE,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_expires=settings.result_expires,
        result_extended=True,
        # At-least-once delivery of the task message; the idempotency record makes the send at-most-once.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        task_track_started=False,
        # Must exceed the longest countdown a task can be given (DISPATCH_REQUEUE_MAX_WAIT), or Redis
        # re-delivers the waiting message while the first copy still sits in a worker.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        enable_utc=True,
    )
    return app


app = make_app()


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    """Celery's own records go through the same JSON renderer as ours."""
    wa_logging.configure()
