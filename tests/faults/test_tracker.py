"""The tracker with real processes: a campaign whose worker is SIGKILLed a third of the way in,
the sandbox posting Meta's signed status webhooks (each echoing the message's
biz_opaque_callback_data) to a real web process. The requests the dead worker had on the wire
were accepted, and their answers died with it; once their statuses arrive, every message the
API accepted is reported `sent` with its wamid, and only a request that never reached the API
may stay `ambiguous`. Production defaults for every recovery setting (as test_recovery.py).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.rig import PRODUCTION_RATE as RATE
from tests.faults.rig import Rig, cli, recipient, write_campaign
from tests.harness import Web, wait_for
from worker.delivery.callback_data import read_tracker
from worker.delivery.idempotency import PREFIX

pytestmark = pytest.mark.faults

SECRET = "tracker-secret"
# Meta's own pace between sent, delivered and read is no wait of ours; a tenth of a second keeps
# the order while the test stays short.
DELAYS = [0.05, 0.15, 0.3]


def test_a_killed_campaigns_accepted_messages_are_reported_sent_once_their_statuses_arrive(
    rig_factory: Any, tmp_path: Path
) -> None:
    rig: Rig = rig_factory(workers=1, latency=0.05, rate_limit=RATE, concurrency=64, production_timings=True)
    web = Web(rig.workdir, {**rig.env, "DISPATCH_WEBHOOK_SECRET": SECRET}).start()
    try:
        rig.sandbox.webhooks(web.webhook_url, SECRET, delays=DELAYS)
        everyone = [recipient(i) for i in range(300)]
        campaign = write_campaign(tmp_path, "tracked", [f"{to},Name" for to in everyone], "every = 86400")
        cli(rig, "campaign", "run", str(campaign), "--run-id", "r1", "--no-wait")
        rig.wait_accepted(100)
        rig.workers[-1].kill()  # a third of the way in: requests on the wire, their answers lost
        killed_at = time.monotonic()
        rig.add_worker()
        wait_for(lambda: cli(rig, "campaign", "status", "tracked", "r1")["done"], 90, "the run to end", 0.5)
        at_done = cli(rig, "campaign", "status", "tracked", "r1")
        accepted = {r["body"]["to"]: r for r in rig.sandbox.accepted()}

        def reported() -> dict[str, dict[str, Any]]:
            return {row["to"]: row for row in cli(rig, "campaign", "report", "tracked", "r1")["recipients"]}

        # The statuses come seconds after (a batch the dead worker had taken from the inbox waits
        # the minute of its reclaim; the other statuses of its messages do not).
        with contextlib.suppress(TimeoutError):  # the checks below say which
            wait_for(
                lambda: _all_reported(reported(), accepted),
                30,
                "every accepted message reported with its wamid",
                0.5,
            )
        settled = time.monotonic() - killed_at
        status = cli(rig, "campaign", "status", "tracked", "r1")
        rows = reported()
        client = rig.redis.client()
    finally:
        web.stop()

    requests = [r["body"]["to"] for r in rig.sandbox.requests()]
    assert len(requests) == len(set(requests)) == len(accepted)  # nobody messaged twice
    for to, request in accepted.items():  # every message the API accepted: sent, with its wamid
        assert (rows[to]["status"], rows[to]["wamid"]) == ("sent", request["wamid"]), (to, rows[to])
        assert read_tracker(request["body"]["biz_opaque_callback_data"])[0] == f"campaign:tracked:r1:{to}"
    ambiguous = [to for to, row in rows.items() if row["status"] == "ambiguous"]
    assert not set(ambiguous) & set(requests)  # only one that never reached the API stays ambiguous
    assert status["sent"] == len(accepted) and status["ambiguous"] == len(ambiguous)
    assert status["sent"] + status["ambiguous"] == 300 and status["failed"] == 0
    tracked = [to for to in accepted if client.hget(PREFIX + f"campaign:tracked:r1:{to}", "tracked") == "1"]
    assert tracked, "no message lost its answer with the worker: this test proved nothing"
    dead = cli(rig, "failed", "list")
    assert len(dead) == len(ambiguous)
    print(
        f"\ncampaign: 300 enqueued, {len(accepted)} accepted by the API, {len(tracked)} of them "
        f"tied back by the tracker; when the run ended: {at_done['sent']} sent, "
        f"{at_done['ambiguous']} ambiguous; after the statuses: {status['sent']} sent, "
        f"{status['ambiguous']} ambiguous, 0 sent twice, {settled:.1f}s after the kill"
    )


def _all_reported(rows: dict[str, dict[str, Any]], accepted: dict[str, dict[str, Any]]) -> bool:
    return all(rows[to]["wamid"] == request["wamid"] for to, request in accepted.items())
