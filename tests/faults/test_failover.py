"""Redis as production runs it: a primary, one replica and three Sentinels (started here on free
ports), two workers (64 threads each, as in the Procfile) and an app that enqueue through
`REDIS_URL=sentinel://...`, every recovery setting at its production default (tests.faults.rig's
FailoverRig; `make soak-failover` runs ten failovers in a row).

The primary is SIGKILLed while an app is still enqueueing a batch at the default 80 msg/s; the
Sentinels promote the replica. Pass = every intent whose enqueue returned ends with a wamid the
sandbox issued or a reasoned failure (`ambiguous` only: a request that may have reached the API),
none accepted twice (the sandbox's accepted list, by body and by recipient), all settled within
60 s of the promotion. The counts are printed for docs/guarantees.md.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.faults.rig import PRODUCTION_RATE as RATE
from tests.faults.rig import FailoverRig, cli, recipient, write_campaign
from tests.harness import tmpdir, wait_for

pytestmark = pytest.mark.faults

BATCH = 1000  # 12.5 s at 80 msg/s: the kill lands with hundreds queued, reserved and in flight
AUDIENCE = 300  # the campaign's recipients


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
    run = rig.batch_through_failover(BATCH)  # also: no intent's body accepted twice, the limit held
    print(
        f"\nsentinel failover: enqueued {run.enqueued} (refused {run.refused}), sent {run.sent}, "
        f"ambiguous {run.ambiguous}, other failures {run.other_failures}, sent twice {run.twice}, "
        f"lost {run.lost}; promotion {run.promotion_s:.1f}s after the kill, settled {run.settled_s:.1f}s "
        f"after it; test {time.monotonic() - started:.0f}s" + "".join(f"\n  {line}" for line in run.refusals)
    )
    assert run.twice == 0, f"{run.twice} recipients accepted more than once"
    assert run.other_failures == 0 and run.lost == 0
    assert run.sent + run.ambiguous == run.enqueued  # every intent whose enqueue returned
    assert run.enqueued + run.refused == BATCH
    assert run.ambiguous <= RATE, f"{run.ambiguous} ambiguous after one failover"
    assert run.settled_s <= 60, f"the last intent settled {run.settled_s:.1f}s after the promotion"


def test_a_campaign_run_through_a_failover_messages_everyone_once(failover_rig, tmp_path) -> None:
    """A campaign's run (its chunks, each recipient's claim, the run's progress) through the same
    failover: the primary SIGKILLed a third of the way in. Everyone messaged at most once, and
    everyone not messaged reported `ambiguous` (a request that may have reached the API)."""
    rig: FailoverRig = failover_rig
    everyone = [recipient(i) for i in range(AUDIENCE)]
    campaign = write_campaign(tmp_path, "failover", [f"{to},Name" for to in everyone], "every = 86400")
    cli(rig, "campaign", "run", str(campaign), "--run-id", "r1", "--no-wait")
    rig.wait_accepted(AUDIENCE // 3)
    _, killed_at, promoted_at = rig.fail_over()
    wait_for(lambda: cli(rig, "campaign", "status", "failover", "r1")["done"], 90, "the run to finish", 0.5)
    settled = time.monotonic() - promoted_at
    status = cli(rig, "campaign", "status", "failover", "r1")
    accepted = [r["body"]["to"] for r in rig.sandbox.accepted()]
    twice = {to: n for to, n in Counter(accepted).items() if n > 1}
    print(
        f"\nsentinel failover, campaign: {AUDIENCE} recipients, sent {status['sent']}, ambiguous "
        f"{status['ambiguous']}, failed {status['failed']}, sent twice {len(twice)}, not messaged "
        f"{len(set(everyone) - set(accepted))}; promotion {promoted_at - killed_at:.1f}s after the "
        f"kill, run finished {settled:.1f}s after it"
    )
    assert not twice and set(accepted) <= set(everyone), f"accepted more than once: {twice}"
    assert status["sent"] + status["ambiguous"] == AUDIENCE and status["failed"] == 0
    assert len(set(everyone) - set(accepted)) <= status["ambiguous"]
    assert status["ambiguous"] <= RATE, f"{status['ambiguous']} ambiguous after one failover"
    assert settled <= 60, f"the run finished {settled:.1f}s after the promotion"
