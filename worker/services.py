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
from worker.delivery.ratelimit import RateLimiter
from worker.delivery.send import SendServices
from worker.delivery.window import CustomerWindows
from worker.process_local import process_local
from worker.redis_conn import get_redis
from worker.settings import Settings, get_settings
from worker.statuses.tracker import StatusStore


@dataclass(frozen=True)
class Services:
    send: SendServices
    runs: CampaignRuns
    statuses: StatusStore

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
    send = SendServices(
        settings=settings,
        client=InteraktClient(settings),
        store=IdempotencyStore(client, settings.idempotency_ttl, stale_after=longest + 5),
        limiter=RateLimiter(client, settings),
        breaker=Breaker(client, settings.phone_number_id, settings.breaker_probe_interval),
        dead=DeadLetters(client, settings.dead_letter_ttl),
        windows=CustomerWindows(client),
    )
    statuses = StatusStore(client, settings.idempotency_ttl)
    return Services(
        send=send, runs=CampaignRuns(client, settings.dead_letter_ttl, statuses), statuses=statuses
    )
