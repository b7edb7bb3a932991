"""Redis as production runs it: a primary, one replica and three Sentinels (started here on free
ports), two workers (64 threads each, as in the Procfile) and an app that enqueue through
`REDIS_URL=sentinel://...`, every recovery setting at its production default.

The primary is SIGKILLed while an app is still enqueueing a batch at the default 80 msg/s; the
Sentinels promote the replica. Pass = every intent whose enqueue returned ends with a wamid the
sandbox issued or a reasoned failure (`ambiguous` only: a request that may have reached the API),
none accepted twice (the sandbox's accepted list, by body and by recipient), all settled within
60 s of the promotion. The counts are printed for docs/guarantees.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from devtools.localstack import SentinelGroup
from tests.faults.rig import PRODUCTION_RATE as RATE
from tests.faults.rig import Rig
from tests.harness import ROOT, TOKEN, Sandbox, Worker, tmpdir, wait_for, worker_env

pytestmark = pytest.mark.faults

BATCH = 600  # 7.5 s at 80 msg/s: the kill lands with hundreds queued, reserved and in flight
# The Sentinels' own setting (production: 5 to 30 s); the project's recovery settings stay at
# their defaults. A second is enough for three Sentinels on one host to agree the primary is gone.
DOWN_AFTER_MS = 1000


class FailoverRig(Rig):
    """Rig's checks and collection over a Sentinel deployment instead of one redis-server."""

    def __init__(self, workdir: Path, workers: int = 2) -> None:
        self.group = SentinelGroup(workdir, replicas=1, down_after_ms=DOWN_AFTER_MS)
        self.redis = self.group.primary
        self.vhost = None
        self.rate_limit = RATE
        self.concurrency = 64
        self.workdir = workdir
        self.sandbox = Sandbox(workdir, latency=0.05, token=TOKEN).start()
        self.env = worker_env(
            self.group.url,
            self.sandbox.api_url,
            False,
            DISPATCH_RATE_LIMIT=str(RATE),
            DISPATCH_LOG_LEVEL="WARNING",
        )
        # Workers are pinged at start through the primary itself (the harness's control client
        # speaks one Redis); they read the broker through the Sentinels.
        self.broker_url = self.group.primary.url
        self.workers: list[Worker] = []
        self.beats = []
        self.intents: dict[str, dict[str, Any]] = {}
        for _ in range(workers):
            self.add_worker()
        self.client = Celery("app", broker=self.group.url, backend=self.group.url)
        options = {"master_name": "mymaster"}
        self.client.conf.update(
            broker_transport_options=options,
            result_backend_transport_options=options,
            broker_connection_retry_on_startup=True,
        )

    def enqueue_in_background(self, n: int, pace: float) -> subprocess.Popen[str]:
        """An app process enqueueing `n` intents through `producers.send_text`, one each `pace`
        seconds; it prints, at the end, the ids whose enqueue returned and the count refused."""
        script = (
            "import json, sys, time\n"
            "from producers import send_text\n"
            "from worker.delivery.errors import EnqueueError\n"
            "ids, refused = [], 0\n"
            f"for i in range({n}):\n"
            "    try:\n"
            "        ids.append(send_text('+91987%07d' % i, 'intent-%d' % i).id)\n"
            "    except EnqueueError as exc:\n"
            "        refused += 1\n"
            "        print('refused:', exc, file=sys.stderr)\n"
            f"    time.sleep({pace!r})\n"
            "print(json.dumps({'ids': ids, 'refused': refused}))\n"
        )
        env = {k: v for k, v in self.env.items() if not k.startswith("INTERAKT_")}
        return subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.sandbox.stop()
        self.group.stop()


@pytest.fixture
def failover_rig() -> Any:
    rig = FailoverRig(tmpdir("wa-failover-"))
    yield rig
    rig.stop()


def test_a_primary_killed_mid_batch_fails_over_with_nothing_lost_and_nothing_sent_twice(failover_rig) -> None:
    rig: FailoverRig = failover_rig
    started = time.monotonic()
    # Sent through the Sentinel deployment before any fault: the URL works for every client.
    rig.collect(rig.produce(5, first=BATCH), timeout=30)
    app = rig.enqueue_in_background(BATCH, pace=1 / (RATE * 1.5))  # enqueued faster than sent
    rig.wait_accepted(5 + BATCH // 4)
    primary = rig.group.primary
    primary.kill()
    killed_at = time.monotonic()
    wait_for(lambda: rig.group.current() is not primary, 30, "a replica promoted", 0.05)
    promoted_at = time.monotonic()
    rig.redis = rig.group.current()  # where Rig's diagnosis looks for queues
    out, err = app.communicate(timeout=120)
    assert app.returncode == 0, err[-2000:]
    enqueued = json.loads(out.strip().splitlines()[-1])
    refusals = [line for line in err.splitlines() if line.startswith("refused:")]
    ids: list[str] = enqueued["ids"]
    outcomes = rig.collect(ids, timeout=90)
    settled = time.monotonic() - promoted_at
    report = rig.check(outcomes)  # also: no intent's body accepted twice, the limit held
    accepted = [r["body"]["to"] for r in rig.sandbox.accepted()]
    twice = {to: n for to, n in Counter(accepted).items() if n > 1}
    ambiguous = report.failed_kinds["ambiguous"]
    print(
        f"\nsentinel failover: enqueued {len(ids)} (refused {enqueued['refused']}), sent {report.sent}, "
        f"ambiguous {ambiguous}, other failures {sum(report.failed_kinds.values()) - ambiguous}, "
        f"sent twice {len(twice)}, lost {len(ids) - len(outcomes)}; promotion {promoted_at - killed_at:.1f}s "
        f"after the kill, settled {settled:.1f}s after it; test {time.monotonic() - started:.0f}s"
        + "".join(f"\n  {line}" for line in refusals)
    )
    assert not twice, f"accepted more than once: {twice}"
    assert set(report.failed_kinds) <= {"ambiguous"}, report.failed_kinds
    assert report.sent + ambiguous == len(ids)  # every intent whose enqueue returned
    assert len(ids) + enqueued["refused"] == BATCH
    assert ambiguous <= RATE, f"{ambiguous} ambiguous after one failover"
    assert settled <= 60, f"the last intent settled {settled:.1f}s after the promotion"
