"""Prometheus metrics from the workers, served on DISPATCH_METRICS_PORT (0: off).

A threads-pool worker is one process and serves its own registry. A prefork worker's children
write to PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode) and the parent serves
the sum, so a scrape sees every child. Queue depth is read from Redis at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
    "Webhook events applied by workers; outcome `changed` or `unchanged` (a replay or a late status)",
    ["event", "outcome"],
)
WEBHOOK_LAG = Histogram(
    "wa_webhook_lag_seconds",
    "From an event's own timestamp to its being applied",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)

CONSUMER_STALLS = Counter(
    "wa_consumer_stalls_total",
    "Times a worker's consumer took nothing while its queues held work and it had room, and the "
    "worker exited to be restarted by its supervisor",
)


class QueueDepth(Collector):
    """Messages waiting in each queue, and intents waiting parked for their number's turn (the
    sorted set `parked`), read from Redis when Prometheus scrapes."""

    def __init__(self, client: redis.Redis, queues: tuple[str, ...], parked: str) -> None:
        self.client = client
        self.queues = queues
        self.parked = parked

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("wa_queue_depth", "Messages waiting in the broker queue", labels=["queue"])
        parked = GaugeMetricFamily("wa_parked_intents", "Intents parked in Redis until their slot")
        try:
            for queue in self.queues:
                gauge.add_metric([queue], self.client.llen(queue))
            parked.add_metric([], self.client.zcard(self.parked))
        except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is away
            return
        yield gauge
        yield parked


def serve(port: int, addr: str, depth: QueueDepth) -> None:
    """Serve /metrics; under prefork the parent serves the sum of its children's registries."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    registry.register(depth)
    start_http_server(port, addr=addr, registry=registry)
