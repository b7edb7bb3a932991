"""RabbitMQ quorum queues set up by the project (issue 27.4): with DISPATCH_QUORUM_QUEUES=true the
workers declare whatsapp.released, whatsapp and campaign as quorum queues (replicated on a
cluster) on a vhost of the test's own, and a worker SIGKILLed a third of the way through a
batch loses nothing and sends nothing twice on them, every recovery setting at its default."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.faults.rig import PRODUCTION_RATE as RATE
from tests.faults.rig import Rig, recipient
from tests.harness import wait_for

pytestmark = pytest.mark.faults

BATCH = 300


def queue_types(vhost: str) -> dict[str, str]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "type", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(line.split("\t")[:2] for line in out.stdout.strip().splitlines() if "\t" in line)


def test_quorum_queues_are_declared_and_a_killed_workers_intents_are_sent_once(rig_factory) -> None:
    rig: Rig = rig_factory(
        workers=1,
        latency=0.05,
        rate_limit=RATE,
        broker="rabbitmq",
        concurrency=64,
        production_timings=True,
        DISPATCH_QUORUM_QUEUES="true",
    )
    assert rig.vhost is not None
    types = queue_types(rig.vhost.name)
    assert {types.get(name) for name in ("whatsapp.released", "whatsapp", "campaign")} == {"quorum"}, types
    settled = rig.kill_mid_batch(BATCH, first=0)  # each settled, none twice, within 60 s
    accepted = [r["body"]["to"] for r in rig.sandbox.accepted()]
    print(
        f"\nrabbitmq quorum queues: enqueued {BATCH}, accepted {len(accepted)} ({len(set(accepted))} "
        f"recipients), the rest ambiguous; SIGKILL to last intent settled {settled:.1f}s"
    )


def test_a_countdown_on_quorum_queues_waits_in_rabbitmq_and_is_sent_once_when_due(rig_factory) -> None:
    """Quorum queues have no global QoS, so a countdown cannot wait in a worker's prefetch: it
    waits in RabbitMQ's native delayed delivery (celery_delayed_* queues), across a worker's kill."""
    rig: Rig = rig_factory(
        workers=1, rate_limit=RATE, broker="rabbitmq", production_timings=True, DISPATCH_QUORUM_QUEUES="true"
    )
    to = recipient(7)
    rig.sandbox.faults({"status": 503, "retry_after": 8, "to": to, "times": 1})
    [task_id] = rig.produce(1, first=7)
    wait_for(lambda: rig.sandbox.requests(), 30, "the first attempt")
    time.sleep(1)  # the requeued message now waits for its countdown
    rig.workers[-1].kill()
    rig.add_worker()
    [value] = rig.collect([task_id], timeout=60).values()
    requests = [r for r in rig.sandbox.requests() if r["body"]["to"] == to]
    assert len(requests) == 2, (value, requests)
    first, second = requests
    assert value["wamid"] == second["wamid"] and first["status"] == 503
    assert (
        second["time"] - first["time"] >= 8
    )  # not early: Retry-After 8 s (past the inline wait, so a countdown)
    assert len(rig.sandbox.accepted()) == 1
