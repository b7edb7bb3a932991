"""The per-process collaborators, built in one place, once per process (again after a fork).

The send path and the campaigns take what they need as arguments; the Celery tasks, the CLI and
the health checks get it from `services()`; an app that only enqueues needs `ledger()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from worker.app import app
from worker.callbacks.config import Callback, load_callbacks
from worker.callbacks.deliver import Dispatcher, Routes, routes
from worker.campaigns.runs import CampaignRuns
from worker.delivery.breaker import Breaker
from worker.delivery.claimslot import ClaimSlot
from worker.delivery.client import InteraktClient
from worker.delivery.deadletters import DeadLetters
from worker.delivery.idempotency import IdempotencyStore, StoredResult
from worker.delivery.media import MediaLinks
from worker.delivery.optouts import OptOuts, keywords
from worker.delivery.parking import ParkingLot
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.reach import Reach
from worker.delivery.send import SenderServices, SendServices
from worker.delivery.senders import senders
from worker.delivery.templates import TemplateRegistry
from worker.delivery.window import CustomerWindows
from worker.ops import logs
from worker.process_local import process_local
from worker.recovery.ledger import Ledger
from worker.recovery.nodes import NODE, WORKERS
from worker.redis_conn import get_enqueue_redis, get_redis
from worker.settings import Settings, get_settings
from worker.statuses.apply import SYNC_TEMPLATES, Reactions
from worker.statuses.tracker import StatusStore


@dataclass(frozen=True)
class Services:
    send: SendServices
    runs: CampaignRuns
    statuses: StatusStore
    parking: ParkingLot

    @property
    def settings(self) -> Settings:
        return self.send.settings


@process_local
def services() -> Services:
    """Everything a worker (or an operator's command) needs; reads every sender's token."""
    settings = get_settings()
    client = get_redis()
    statuses = status_store()
    runs = CampaignRuns(client, settings.dead_letter_ttl, statuses)
    return Services(
        send=send_services(settings, client), runs=runs, statuses=statuses, parking=ParkingLot(client)
    )


@process_local
def status_store() -> StatusStore:
    """The delivery statuses over the state Redis: all a status read needs (no sender, no token)."""
    return StatusStore(get_redis(), get_settings().idempotency_ttl)


def send_services(settings: Settings, client: redis.Redis) -> SendServices:
    """The send path's collaborators over one Redis: shared records and dead letters, each sender's own."""
    # A send can take connect + read timeout per inline attempt plus the waits between them.
    longest = settings.inline_attempts * (
        settings.connect_timeout + settings.read_timeout + settings.inline_max_wait
    )
    each_sender = senders(settings)
    for sender in each_sender.values():
        if sender.access_token:
            logs.register_secret(sender.access_token.get_secret_value())
    return SendServices(
        settings=settings,
        store=IdempotencyStore(
            client,
            settings.idempotency_ttl,
            stale_after=longest + 5,
            liveness=(WORKERS, NODE, settings.heartbeat_timeout),
            dead_ttl=settings.dead_letter_ttl,
        ),
        dead=DeadLetters(client, settings.dead_letter_ttl),
        windows=CustomerWindows(client),
        senders={name: _sender_services(name, sender, client) for name, sender in each_sender.items()},
        claim_slot=ClaimSlot(client),
        optouts=OptOuts(client),
        resync_template=_enqueue_resync,
        result_document=_result_document
        if settings.state_redis_url == settings.celery_result_backend
        else None,
    )


def _sender_services(name: str, sender: Settings, client: redis.Redis) -> SenderServices:
    api = InteraktClient(sender)
    return SenderServices(
        name=name,
        settings=sender,
        client=api,
        limiter=RateLimiter(client, sender),
        breaker=Breaker(client, sender.phone_number_id, sender.breaker_probe_interval),
        templates=TemplateRegistry(client, sender.waba_id),
        media=MediaLinks(client, api, sender),
        reach=Reach(client, sender.waba_id, sender.daily_limit),
    )


def _enqueue_resync(sender: str, name: str) -> None:
    """By task name (routed to the campaign queue), so this module never imports the tasks."""
    app.send_task(SYNC_TEMPLATES, kwargs={"name": name, "sender": sender})


def reactions(s: Services) -> Reactions:
    """What the webhook applier does beyond recording, from the settings and the senders."""
    settings = s.settings
    numbers = {sender.settings.phone_number_id: name for name, sender in s.send.senders.items()}
    return Reactions(
        status_task=settings.status_task,
        inbound_task=settings.inbound_task,
        payment_task=settings.payment_task,
        auto_read=settings.auto_read,
        phone_number_id=settings.phone_number_id,
        senders=numbers,
        accounts=s.send.accounts(),
        optout_keywords=keywords(settings.optout_keywords),
        optin_keywords=keywords(settings.optin_keywords),
    )


@process_local
def callbacks() -> dict[str, Callback]:
    """Each API key name's HTTP callback (DISPATCH_CALLBACKS_FILE); CallbacksError when broken."""
    path = get_settings().callbacks_file
    return load_callbacks(path) if path else {}


def callback_routes(s: Services, api_keys: list[Any]) -> Routes:
    """Which keys' callbacks hear what: the senders each key may use come from the API keys
    (DISPATCH_API_KEYS[_FILE], `worker.web.auth.load_keys`, read by the caller, which sits above
    the web package) when the workers have them, else a key hears every sender."""
    found = callbacks()
    return routes(s.statuses.redis, s.settings, found, api_keys if found else [])


def dispatcher(s: Services, api_keys: list[Any]) -> Dispatcher:
    return Dispatcher(callback_routes(s, api_keys).outbox, callbacks(), s.settings)


@process_local
def _results() -> Any:
    """One result backend per process to lay out and encode documents (pure work): Celery's
    `app.backend` is one per thread, and building one reads package metadata from disk."""
    return app.backend


def _result_document(task_id: str, result: Any, state: str) -> StoredResult:
    """A task's Celery result in `state`, as this thread's result backend would store it. A send's
    SUCCESS written with its record saves two round trips (Celery's own store afterwards finds the
    task already SUCCESS and leaves it: its guard against a lost worker overwriting a result); a
    parked intent's RETRY written as it parks saves one."""
    backend = _results()
    encoded = backend.encode_result(result, state)  # an exception as the backend lays one out
    meta = backend._get_result_meta(encoded, state, None, None)  # the backend's own layout
    meta["task_id"] = task_id
    key = backend.get_key_for_task(task_id).decode()
    return StoredResult(key, backend.encode(meta), backend.expires)


@process_local
def ledger() -> Ledger | None:
    """The intent ledger, with a Redis broker only (RabbitMQ has no pop-before-record gap). Apps
    that enqueue need it, and nothing else here (no sender's token)."""
    settings = get_settings()
    if not settings.redis_broker:
        return None
    return Ledger(get_enqueue_redis(), beside_broker=settings.celery_broker_url == settings.state_redis_url)
