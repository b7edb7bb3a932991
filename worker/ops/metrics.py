"""Prometheus metrics from the workers, served on DISPATCH_METRICS_PORT (0: off).

A threads-pool worker is one process and serves its own registry. A prefork worker's children
write to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode) and the parent serves
the sum, so a scrape sees every child. Queue depth is read from Redis at scrape time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

SENT = Counter("wa_messages_sent_total", "Messages the API accepted (a wamid came back)", ["sender", "type"])
FAILED = Counter(
    "wa_messages_failed_total", "Messages that ended in failure", ["sender", "type", "kind", "code"]
)
RETRIES = Counter("wa_retries_total", "Intents handed back to the queue", ["sender", "reason"])
RATE_WAIT = Histogram(
    "wa_rate_limit_wait_seconds",
    "Time spent waiting for a rate-limit slot",
    buckets=(0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_LATENCY = Histogram(
    "wa_api_latency_seconds",
    "Interakt API response time",
    ["sender", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)

API_ERRORS = Counter(
    "wa_api_errors_total",
    "API calls answered with an error, by its code: the account codes (190, 131048) pause the number"
    " and 131056 requeues, so they never reach wa_messages_failed_total",
    ["sender", "kind", "code"],
)

# An OTP is read within seconds: the buckets are fine from 1 to 10 s, coarse past a minute (a
# message parked for its number's turn, or waiting out an open breaker).
QUEUED_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120, 300, 900, 3600)
ENQUEUE_TO_FIRST_ATTEMPT = Histogram(
    "wa_enqueue_to_first_attempt_seconds",
    "From the publish of a message enqueued one by one to its first API call (campaign recipients"
    " go at their run's pace and are not observed); exemplar: the task id",
    ["sender", "type"],
    buckets=QUEUED_BUCKETS,
)
ENQUEUE_TO_WAMID = Histogram(
    "wa_enqueue_to_wamid_seconds",
    "From the publish of a message enqueued one by one to the API's wamid; exemplar: the task id",
    ["sender", "type"],
    buckets=QUEUED_BUCKETS,
)

WEBHOOK_RECEIVED = Counter(
    "wa_webhook_events_received_total",
    "Webhook events accepted by the web process (in Redis, answered 200)",
    ["source", "event"],
)
WEBHOOK_REJECTED = Counter(
    "wa_webhook_rejected_total", "Webhook requests refused or dropped, by reason", ["reason"]
)
WEBHOOK_APPLIED = Counter(
    "wa_webhook_events_applied_total",
    "Webhook events applied by workers; outcome `changed`, `unchanged` (a replay or a late "
    "status) or `dropped` (a field not read)",
    ["event", "outcome"],
)
WEBHOOK_LAG = Histogram(
    "wa_webhook_lag_seconds",
    "From an event's own timestamp to its being applied",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PRICED = Counter(
    "wa_messages_priced_total",
    "Messages whose pricing a status webhook carried, each wamid once: by category as billed"
    " (marketing, utility, authentication, service, other) and billable (true) or free (false)",
    ["sender", "category", "billable"],
)
STATUSES = Counter(
    "wa_message_statuses_total",
    "Delivery statuses that changed a sent message (sent, delivered, read, failed): the funnel, by sender",
    ["sender", "status"],
)
WEBHOOK_ACCEPT = Histogram(
    "wa_webhook_accept_seconds",
    "From a webhook POST's arrival to its answer once stored in the inbox (the web process;"
    " Interakt wants an answer within 3 s)",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 3),
)

RECOVERY = Counter(
    "wa_recovery_events_total",
    "Crash recovery: `worker_lost` (a node stopped beating), `restored` (its unacknowledged"
    " messages put back), `republished` (lost ledgered tasks published again by the audit)",
    ["event"],
)

CONSUMER_STALLS = Counter(
    "wa_consumer_stalls_total",
    "Times a worker's consumer took nothing while its queues held work and it had room, and the "
    "worker exited to be restarted by its supervisor",
    # A label, so no value exists (nor, in a prefork worker's parent, a multiprocess file) until one.
    ["action"],
)


class QueueDepth(Collector):
    """Messages waiting in each queue, and intents waiting parked for their number's turn (the
    sorted set `parked`), read from Redis when Prometheus scrapes."""

    def __init__(self, client: redis.Redis, queues: tuple[str, ...], parked: str) -> None:
        self.client = client
        self.queues = queues
        self.parked = parked

    def describe(self) -> list[GaugeMetricFamily]:
        """The families without samples: the registry checks names with this, not with a read."""
        return list(self._families())

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("wa_queue_depth", "Messages waiting in the broker queue", labels=["queue"]),
            GaugeMetricFamily("wa_parked_intents", "Intents parked in Redis until their slot"),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge, parked = self._families()
        try:
            for queue in self.queues:
                gauge.add_metric([queue], self.client.llen(queue))
            parked.add_metric([], self.client.zcard(self.parked))
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is away
            return
        yield gauge
        yield parked


@dataclass(frozen=True)
class WatchedSender:
    """What the scrape reads of one sender: the Redis keys of its breaker, its number's parked
    line (the time its last parked intent is due) and its account's messaging-limit count, and
    its `daily_limit` (None: not counted)."""

    name: str
    breaker: str
    line: str
    reach: str
    daily_limit: int | None


@dataclass(frozen=True)
class Liveness:
    """The workers' heartbeats hash (node -> last beat), this process's node, and the timeout
    after which a node counts as dead."""

    workers: str
    node: str
    timeout: float


REACH_WINDOW = 24 * 3600  # the messaging limit's rolling window


class SendState(Collector):
    """Per sender: breaker open (and whether by hand), seconds of parked line ahead, messaging
    limit and its use; the dead letters; live workers and this node's last heartbeat. Read from
    Redis when Prometheus scrapes, so every worker reports the same shared state (a dashboard
    takes the max over instances)."""

    def __init__(
        self, client: redis.Redis, senders: Sequence[WatchedSender], dead_letters: str, liveness: Liveness
    ) -> None:
        self.client = client
        self.senders = senders
        self.dead_letters = dead_letters
        self.liveness = liveness

    def describe(self) -> list[GaugeMetricFamily]:
        """The families without samples: the registry checks names with this, not with a read."""
        return list(self._families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families = self._read(time.time())
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is away
            return
        yield from families

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, text: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=list(labels))

        return {
            "breaker": gauge("wa_breaker_open", "1 while the sender's breaker is open", "sender"),
            "manual": gauge(
                "wa_breaker_manual", "1 while the open breaker is a pause by hand (no probes)", "sender"
            ),
            "line": gauge(
                "wa_parked_line_seconds", "Until the last intent parked in the sender's line is due", "sender"
            ),
            "limit": gauge(
                "wa_daily_limit",
                "The sender's messaging limit (unique template recipients in 24 h)",
                "sender",
            ),
            "used": gauge(
                "wa_daily_limit_used",
                "Unique template recipients counted in the last 24 h (shared by the senders of one account)",
                "sender",
            ),
            "dead": gauge("wa_dead_letters", "Intents kept in the dead letters (for re-drive)"),
            "alive": gauge("wa_workers_alive", "Worker processes whose heartbeat is fresh"),
            "beat": gauge(
                "wa_worker_heartbeat_timestamp_seconds", "This worker's last heartbeat (unix time)"
            ),
        }

    def _read(self, now: float) -> list[GaugeMetricFamily]:
        pipe = self.client.pipeline(transaction=False)
        for sender in self.senders:
            pipe.hmget(sender.breaker, "state", "manual")
            pipe.get(sender.line)
            pipe.zcount(sender.reach, now - REACH_WINDOW, "+inf")
        pipe.hlen(self.dead_letters)
        pipe.hgetall(self.liveness.workers)
        replies = pipe.execute()
        f = self._families()
        for i, sender in enumerate(self.senders):
            (state, by_hand), line_end, counted = replies[3 * i : 3 * i + 3]
            is_open = state == "open"
            f["breaker"].add_metric([sender.name], float(is_open))
            f["manual"].add_metric([sender.name], float(is_open and by_hand == "1"))
            f["line"].add_metric([sender.name], max(0.0, float(line_end or 0) - now))
            if sender.daily_limit is not None:
                f["limit"].add_metric([sender.name], sender.daily_limit)
                f["used"].add_metric([sender.name], counted)
        f["dead"].add_metric([], replies[-2])
        beats = {node: float(at) for node, at in cast(dict[str, str], replies[-1]).items()}
        f["alive"].add_metric([], sum(1 for at in beats.values() if now - at <= self.liveness.timeout))
        if self.liveness.node not in beats:  # declared dead by another worker: no beat to show
            del f["beat"]
        else:
            f["beat"].add_metric([], beats[self.liveness.node])
        return list(f.values())


def serve(port: int, addr: str, depth: QueueDepth, *state: Collector) -> None:
    """Serve /metrics; under prefork the parent serves the sum of its children's registries.
    `depth` and `state` are read from Redis at scrape time."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    for collector in (depth, *state):
        registry.register(collector)
    start_http_server(port, addr=addr, registry=registry)
