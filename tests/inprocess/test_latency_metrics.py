"""What the monitoring reads, produced the way production produces it: a delivery's latency
histograms with their task-id exemplars, the enqueue time as a message header through the real
broker (and through a parked line), the shared state the workers' /metrics read from Redis, and
the web process's webhook accept time."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis
import redis.asyncio
from celery.app.task import Context
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry
from starlette.applications import Starlette
from starlette.requests import Request

from devtools.localstack import RedisServer
from devtools.webhooks import signed, status_body
from tests import spec_examples as spec
from tests.harness import PHONE_NUMBER_ID, WABA_ID
from tests.inprocess.conftest import ThreadSandbox
from worker.app import app as celery_app
from worker.app import send_state
from worker.delivery.deadletters import DeadLetters
from worker.delivery.errors import PermanentError
from worker.delivery.parking import Parked, ParkingLot
from worker.delivery.ratelimit import breaker_key
from worker.delivery.send import Lane, MessageDelivery, SendServices, deliver_message
from worker.lifecycle import _publish_released
from worker.ops import metrics
from worker.recovery.ledger import INDEX as LEDGER_INDEX
from worker.recovery.ledger import QUEUES as LEDGER_QUEUES
from worker.recovery.ledger import Ledger, LedgerEntry
from worker.recovery.nodes import NODE, WORKERS
from worker.recovery.recoverer import Recoverer
from worker.settings import Settings
from worker.statuses.apply import Applier, Reactions
from worker.statuses.tracker import StatusStore
from worker.tasks import ENQUEUED_AT, enqueued_time, send_message
from worker.web.app import receive

TEXT = {"to": spec.TO, "type": "text", "text": {"preview_url": False, "body": "This is a test"}}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def exemplars(histogram: Any, **labels: str) -> list[dict[str, str]]:
    """The exemplars of a histogram's buckets, as an OpenMetrics scrape shows them."""
    [family] = histogram.collect()
    return [
        s.exemplar.labels
        for s in family.samples
        if s.name.endswith("_bucket") and s.exemplar and labels.items() <= s.labels.items()
    ]


def test_a_message_enqueued_5_s_ago_is_observed_at_its_first_attempt_and_its_wamid(
    send: SendServices, sandbox: ThreadSandbox
) -> None:
    labels = {"sender": "default", "type": "text"}
    first = sample("wa_enqueue_to_first_attempt_seconds_count", **labels)
    wamid = sample("wa_enqueue_to_wamid_seconds_count", **labels)
    in_7_5 = sample("wa_enqueue_to_wamid_seconds_bucket", le="7.5", **labels)
    in_3 = sample("wa_enqueue_to_wamid_seconds_bucket", le="3.0", **labels)

    deliver_message(send, dict(TEXT), "task-slow-otp", requeues=0, enqueued_at=time.time() - 5)

    assert sample("wa_enqueue_to_first_attempt_seconds_count", **labels) == first + 1
    assert sample("wa_enqueue_to_wamid_seconds_count", **labels) == wamid + 1
    # 5 s and a little: within 7.5 s, not within 3 s.
    assert sample("wa_enqueue_to_wamid_seconds_bucket", le="7.5", **labels) == in_7_5 + 1
    assert sample("wa_enqueue_to_wamid_seconds_bucket", le="3.0", **labels) == in_3
    # The slow message can be found: its task id is the exemplar, here and on the API call.
    assert {"task_id": "task-slow-otp"} in exemplars(metrics.ENQUEUE_TO_WAMID, **labels)
    assert {"task_id": "task-slow-otp"} in exemplars(metrics.API_LATENCY, sender="default")


def test_a_duplicate_a_campaign_recipient_and_a_message_without_the_header_are_not_observed(
    send: SendServices, sandbox: ThreadSandbox
) -> None:
    labels = {"sender": "default", "type": "text"}
    deliver_message(send, dict(TEXT), "task-once", requeues=0, enqueued_at=time.time())
    before = sample("wa_enqueue_to_wamid_seconds_count", **labels)
    deliver_message(send, dict(TEXT), "task-once", requeues=0, enqueued_at=time.time())  # its kept wamid
    lane = Lane("spring-sale", "wa:campaign:spring-sale:run-1:tally", "run-1")
    MessageDelivery(send, dict(TEXT), "task-campaign", 0, lane, enqueued_at=time.time()).run()
    deliver_message(send, dict(TEXT), "task-no-header", requeues=0)
    assert sample("wa_enqueue_to_wamid_seconds_count", **labels) == before
    assert sample("wa_messages_sent_total", **labels) >= 3


def test_an_api_error_is_counted_by_its_code(send: SendServices, sandbox: ThreadSandbox) -> None:
    labels = {"sender": "default", "kind": "permanent", "code": "131047"}
    before = sample("wa_api_errors_total", **labels)
    sandbox.faults({"status": 400, "code": 131047, "message": "Re-engagement message"})
    with pytest.raises(PermanentError):
        deliver_message(send, dict(TEXT), "task-window", requeues=0, enqueued_at=time.time())
    assert sample("wa_api_errors_total", **labels) == before + 1


def test_the_funnel_counts_each_status_that_changed_a_message_by_sender(
    r: redis.Redis, send: SendServices, sandbox: ThreadSandbox
) -> None:
    wamid = deliver_message(send, dict(TEXT), "task-funnel", requeues=0)["wamid"]
    applier = Applier(
        StatusStore(r, 3600),
        send.windows,
        send.dead,
        Reactions(None, None, False, PHONE_NUMBER_ID, {PHONE_NUMBER_ID: "default"}, {}),
        lambda name, kwargs, queue: None,
    )
    delivered = sample("wa_message_statuses_total", sender="default", status="delivered")
    read = sample("wa_message_statuses_total", sender="default", status="read")
    batch = [
        (
            f"{i}-0",
            {"body": json.dumps(status_body(PHONE_NUMBER_ID, wamid, status, spec.TO)), "received": "0"},
        )
        for i, status in enumerate(["delivered", "read"])
    ]
    applier.apply(batch)
    applier.apply(batch)  # a replay changes nothing, and counts nothing
    assert sample("wa_message_statuses_total", sender="default", status="delivered") == delivered + 1
    assert sample("wa_message_statuses_total", sender="default", status="read") == read + 1


def _pop_message(client: redis.Redis, queue: str) -> dict[str, Any]:
    raw = client.rpop(queue)
    assert raw is not None, f"nothing published to {queue}"
    return json.loads(raw)


def test_the_enqueue_time_travels_as_a_header_through_the_broker(redis_server: RedisServer) -> None:
    broker = redis.Redis(port=redis_server.port, db=0, decode_responses=True)
    queue = "test-monitoring"
    broker.delete(queue)
    before = time.time()
    result = send_message.apply_async(kwargs=dict(TEXT), queue=queue)
    message = _pop_message(broker, queue)
    headers = message["headers"]
    assert before <= headers[ENQUEUED_AT] <= time.time()
    # A worker's request carries the message headers as attributes; an eager one in `headers`.
    assert enqueued_time(Context(headers)) == headers[ENQUEUED_AT]
    assert enqueued_time(Context(headers={ENQUEUED_AT: 12.5})) == 12.5
    assert enqueued_time(Context({})) is None
    # A retry publishes with the request's headers: the first enqueue time stays.
    send_message.apply_async(kwargs=dict(TEXT), queue=queue, task_id=result.id, headers={ENQUEUED_AT: 1.0})
    assert _pop_message(broker, queue)["headers"][ENQUEUED_AT] == 1.0
    Ledger(broker).settle(result.id)
    broker.srem(LEDGER_QUEUES, queue)


def test_a_parked_intent_is_released_with_its_first_enqueue_time(
    redis_server: RedisServer, r: redis.Redis
) -> None:
    lot = ParkingLot(r)
    lot.park("task-parked", time.time() - 1, Parked("worker.tasks.send_message", dict(TEXT), 1, 1234.5))
    [(task_id, parked)] = lot.take(time.time())
    assert parked.enqueued_at == 1234.5
    broker = redis.Redis(port=redis_server.port, db=0, decode_responses=True)
    broker.delete("whatsapp.released")
    _publish_released([(task_id, parked)])
    headers = _pop_message(broker, "whatsapp.released")["headers"]
    assert headers[ENQUEUED_AT] == 1234.5 and headers["wa_released"] == "1"
    assert headers["id"] == "task-parked"


def _families(collector: metrics.SendState) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in collector.collect()}


def test_the_shared_state_is_read_from_redis_at_scrape_time(r: redis.Redis, settings: Settings) -> None:
    state = send_state(settings.model_copy(update={"daily_limit": 250}), r)
    now = time.time()
    r.hset(breaker_key(PHONE_NUMBER_ID), mapping={"state": "open", "code": 190, "manual": 1})
    r.set(f"wa:rl:{PHONE_NUMBER_ID}:park", now + 120)
    r.zadd(f"wa:reach:{WABA_ID}", {"+919000000001": now - 60, "+919000000002": now - 25 * 3600})
    DeadLetters(r, 3600).add("key-1", dict(TEXT), {"kind": "permanent", "code": 131047}, 1, "task-1")
    r.hset(WORKERS, mapping={NODE: now - 1, "gone:1:abc": now - 3600})

    seen = _families(state)
    assert seen["wa_breaker_open"] == [({"sender": "default"}, 1.0)]
    assert seen["wa_breaker_manual"] == [({"sender": "default"}, 1.0)]
    [(_, line)] = seen["wa_parked_line_seconds"]
    assert 110 < line <= 120
    assert seen["wa_daily_limit"] == [({"sender": "default"}, 250.0)]
    assert seen["wa_daily_limit_used"] == [({"sender": "default"}, 1.0)]  # the other is past 24 h
    assert seen["wa_dead_letters"] == [({}, 1.0)]
    assert seen["wa_workers_alive"] == [({}, 1.0)]
    [(_, beat)] = seen["wa_worker_heartbeat_timestamp_seconds"]
    assert beat == pytest.approx(now - 1)

    r.delete(breaker_key(PHONE_NUMBER_ID), WORKERS)
    seen = _families(state)
    assert seen["wa_breaker_open"] == [({"sender": "default"}, 0.0)]
    assert seen["wa_workers_alive"] == [({}, 0.0)]
    assert "wa_worker_heartbeat_timestamp_seconds" not in seen


def test_a_scrape_with_redis_away_shows_no_state_and_does_not_fail(settings: Settings) -> None:
    away = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    state = metrics.SendState(away, [], "wa:dead", metrics.Liveness(WORKERS, NODE, 10))
    assert list(state.collect()) == []


def test_a_stored_webhook_is_timed_by_its_source(
    redis_server: RedisServer, r: redis.Redis, settings: Settings
) -> None:
    secret = "monitoring-secret"
    body, headers = signed(status_body(PHONE_NUMBER_ID, "wamid.monitoring", "delivered", spec.TO), secret)
    before = sample("wa_webhook_accept_seconds_count", source="meta")

    async def post() -> int:
        web = Starlette()
        web.state.redis = redis.asyncio.Redis(port=redis_server.port, db=1)
        web.state.settings = settings.model_copy(update={"webhook_secret": SecretStr(secret)})
        sent = False

        async def body_stream() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/webhooks/whatsapp",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "app": web,
        }
        try:
            return (await receive(Request(scope, body_stream))).status_code
        finally:
            await web.state.redis.aclose()

    assert asyncio.run(post()) == 200
    assert sample("wa_webhook_accept_seconds_count", source="meta") == before + 1
    assert sample("wa_webhook_accept_seconds_sum", source="meta") > 0


def test_a_lost_worker_and_a_republished_task_are_recovery_events(
    redis_server: RedisServer, r: redis.Redis
) -> None:
    lost, republished = (
        sample("wa_recovery_events_total", event="worker_lost"),
        sample("wa_recovery_events_total", event="republished"),
    )
    settings = Settings(REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/1")
    node = Recoverer(celery_app, r, settings, "node-live", lambda task_id: True)
    r.hset(WORKERS, "node-dead", time.time() - 3600)
    node.tick()
    assert sample("wa_recovery_events_total", event="worker_lost") == lost + 1
    Ledger(r).record("task-lost", LedgerEntry("worker.tasks.send_message", dict(TEXT), "whatsapp", None))
    r.zadd(LEDGER_INDEX, {"task-lost": time.time() - 3600})
    node.audit()
    assert sample("wa_recovery_events_total", event="republished") == republished + 1
