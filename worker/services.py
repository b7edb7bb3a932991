"""The per-process collaborators, built in one place, once per process (again after a fork).

The send path and the campaigns take what they need as arguments; the Celery tasks, the CLI and
the health checks get it from `services()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.campaigns.runs import CampaignRuns
from worker.delivery.breaker import Breaker
from worker.delivery.client import InteraktClient
from worker.delivery.deadletters import DeadLetters
from worker.delivery.idempotency import IdempotencyStore
from worker.delivery.media import MediaLinks
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.send import SendServices
from worker.delivery.templates import TemplateRegistry
from worker.process_local import process_local
from worker.recovery.ledger import Ledger
from worker.recovery.nodes import NODE, WORKERS
from worker.redis_conn import get_redis
from worker.settings import Settings, get_settings


@dataclass(frozen=True)
class Services:
    send: SendServices
    runs: CampaignRuns
    ledger: Ledger | None  # with a Redis broker only: RabbitMQ has no pop-before-record gap

    @property
    def settings(self) -> Settings:
        return self.send.settings


@process_local
def services() -> Services:
    settings = get_settings()
    client = get_redis()
    # A send can take connect + read timeout per inline attempt plus the waits between them.
    longest = settings.inline_attempts * (
        settings.connect_timeout + settings.read_timeout + settings.inline_max_wait
    )
    api = InteraktClient(settings)
    send = SendServices(
        settings=settings,
        client=api,
        store=IdempotencyStore(
            client,
            settings.idempotency_ttl,
            stale_after=longest + 5,
            liveness=(WORKERS, NODE, settings.heartbeat_timeout),
        ),
        limiter=RateLimiter(client, settings),
        breaker=Breaker(client, settings.phone_number_id, settings.breaker_probe_interval),
        dead=DeadLetters(client, settings.dead_letter_ttl),
        templates=TemplateRegistry(client, settings.waba_id),
        media=MediaLinks(client, api, settings),
        resync_template=_enqueue_resync,
    )
    ledger = Ledger(client) if settings.redis_broker else None
    return Services(send=send, runs=CampaignRuns(client, settings.dead_letter_ttl), ledger=ledger)


def _enqueue_resync(name: str) -> None:
    from worker.tasks import sync_templates  # the tasks module imports this one

    sync_templates.apply_async(kwargs={"name": name})
