"""Fault tests: real redis-server, sandbox and celery workers; a batch of 500 intents; one fault each.

Pass = every intent accounted for (a wamid the sandbox really issued for that intent, or a
FAILURE with a kind), no intent accepted twice by the sandbox (except under at-least-once), and
no one-second window with more than the per-number limit plus 5 %.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from tests.faults.rig import BATCH, Rig

pytestmark = pytest.mark.faults


def test_redis_restarted_while_producing_and_sending(rig_factory) -> None:
    """Enqueued as apps are told to (the project's app, so each intent is in the ledger). Redis can
    serve a pending wait and exit before it replies; the wait takes nothing (worker.broker), and a
    fetch script whose reply was lost is settled through the next connection."""
    rig: Rig = rig_factory(workers=1, persistent_redis=True, latency=0.01)
    ids: list[str] = []
    producer = threading.Thread(target=lambda: ids.extend(rig.produce(BATCH, pace=0.004)))
    producer.start()
    rig.wait_accepted(BATCH // 5)
    rig.redis.stop()  # SIGTERM: Redis writes its append-only file and exits
    time.sleep(1.5)
    rig.redis.start()
    producer.join(120)
    assert len(ids) == BATCH  # every publish went through after its bounded retry
    report = rig.check(rig.collect(ids, timeout=180))
    assert report.sent >= BATCH * 0.95
    assert set(report.failed_kinds) <= {"ambiguous"}


def test_api_answering_500_for_30_percent(rig_factory) -> None:
    rig: Rig = rig_factory(workers=1)
    rig.sandbox.faults({"status": 500, "rate": 0.3})
    report = rig.check(rig.collect(rig.enqueue(BATCH), timeout=120))
    statuses = Counter(r["status"] for r in rig.sandbox.requests())
    assert statuses[500] >= BATCH * 0.2
    assert report.sent == BATCH  # 10 attempts each: 0.3**10 odds of running out
    assert max(report.attempts) > 1


def test_api_sleeping_past_the_read_timeout(rig_factory) -> None:
    rig: Rig = rig_factory(workers=1)
    rig.sandbox.faults({"sleep": 1.5, "accept": True, "rate": 0.05})  # read timeout is 1 s
    report = rig.check(rig.collect(rig.enqueue(BATCH), timeout=120))
    assert report.failed_kinds["ambiguous"] >= 5
    assert set(report.failed_kinds) == {"ambiguous"}
    assert report.sent + report.failed_kinds["ambiguous"] == BATCH
    # each ambiguous one was received exactly once and never resent
    assert all(n == 1 for n in report.received_per_intent.values())


def test_same_intent_twice_on_two_workers_is_sent_once(rig_factory) -> None:
    rig: Rig = rig_factory(workers=2, latency=0.02)
    first = rig.enqueue(BATCH, key=lambda i: f"order-{i}")
    second = rig.enqueue(BATCH, key=lambda i: f"order-{i}")
    outcomes = rig.collect(first + second, timeout=120)
    report = rig.check(outcomes)
    assert report.sent == 2 * BATCH
    for a, b in zip(first, second, strict=True):
        assert outcomes[a]["wamid"] == outcomes[b]["wamid"]
    assert len(rig.sandbox.accepted()) == BATCH


def test_429_storm_is_absorbed(rig_factory) -> None:
    rig: Rig = rig_factory(workers=1)
    rig.sandbox.faults({"status": 429, "code": 130429, "retry_after": 0.5, "rate": 0.5, "for": 4})
    report = rig.check(rig.collect(rig.enqueue(BATCH), timeout=120))
    assert report.sent == BATCH
    assert Counter(r["status"] for r in rig.sandbox.requests())[429] >= 10
    assert "throttled" in {line.get("event") for line in rig.workers[0].log_lines()}


def test_token_expired_for_a_minute_then_recovered(rig_factory) -> None:
    rig: Rig = rig_factory(workers=1, probe_interval=2)
    rig.sandbox.faults({"status": 401, "code": 190, "message": "Session has expired", "for": 60})
    started = time.time()
    report = rig.check(rig.collect(rig.enqueue(BATCH), timeout=180))
    assert report.sent == BATCH and not report.failed_kinds  # nothing failed for that reason
    refused = [r for r in rig.sandbox.requests() if r["status"] == 401]
    assert refused and max(r["time"] for r in refused) - started >= 55
    # the pause cost a probe every 2 s plus what was in flight when it tripped, not 500 failures
    assert len(refused) <= 60 / 2 + 32
    assert min(r["time"] for r in rig.sandbox.accepted()) - started >= 59
