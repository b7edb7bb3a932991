"""A partitioned worker host (issue 27.3): workers on two hosts, one of them a network namespace of
the test's own (tests/faults/netns.py), sharing one Redis and the sandbox. Mid-batch that host is
cut off from Redis but not from the API for 30 s, then healed; then cut off from the API but not
from Redis. Every recovery setting is the production default (DISPATCH_HEARTBEAT_TIMEOUT 10 s, the
audit's grace, the breaker's 30 s probe), and so is the rate limit (80 msg/s).

What a user checks afterwards: no message reached the API twice, every intent ended with a wamid
or a reasoned failure, and the other host carried the cut-off host's intents meanwhile. Cut off
from the API (not from Redis), a host keeps taking intents and requeues them with backoff, so the
batch settles later (the breaker is the account's, and a network failure does not trip it)."""

from __future__ import annotations

import time

import pytest

from tests.faults.netns import Peer, TestHost
from tests.faults.rig import PRODUCTION_RATE, Rig

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not TestHost.available(), reason="network namespaces need root and iproute2"),
]

CUT_FOR = 30.0  # the partition
BATCH = 800  # 10 s of the number's rate: the cut comes a quarter of the way in


def test_a_host_cut_off_from_redis_then_from_the_api_loses_nothing_and_sends_nothing_twice(
    rig_factory,
) -> None:
    with TestHost() as host:
        to_redis, to_api = host.links[Peer.REDIS], host.links[Peer.API]
        rig: Rig = rig_factory(
            workers=1,  # the machine's own worker
            latency=0.05,
            rate_limit=PRODUCTION_RATE,
            concurrency=16,
            production_timings=True,
            sandbox_host=to_api.machine_ip,  # both hosts reach the API there
        )
        redis = rig.redis.client()  # listening on the host's link too, which only the host reaches
        redis.config_set("bind", f"127.0.0.1 {to_redis.machine_ip}")
        redis.config_set("protected-mode", "no")
        rig.add_worker(netns=host.name, REDIS_URL=f"redis://{to_redis.machine_ip}:{rig.redis.port}/0")

        for peer in (Peer.REDIS, Peer.API):
            first = 0 if peer is Peer.REDIS else BATCH
            ids = rig.produce(BATCH, first=first)
            already = len(rig.sandbox.accepted())
            rig.wait_accepted(already + BATCH // 4)
            host.cut(peer)
            cut_at = time.monotonic()
            during = len(rig.sandbox.accepted())
            left = BATCH - (during - already)  # what was still to send when the cut came
            time.sleep(CUT_FOR)
            carried = len(rig.sandbox.accepted()) - during  # by the other host, while this one was cut
            host.heal(peer)
            outcomes = rig.collect(ids, timeout=120)
            settled = time.monotonic() - cut_at
            report = rig.check(outcomes)  # also: nothing accepted twice, the rate held
            ambiguous = report.failed_kinds["ambiguous"]
            print(
                f"\ncut from {peer.name}: {BATCH} enqueued, {report.sent} sent, "
                f"{dict(report.failed_kinds)} failed, 0 twice; {left} left at the cut, {carried} of them "
                f"sent by the other host during the {CUT_FOR:.0f} s cut; all settled {settled:.1f} s after it"
            )
            assert report.sent + sum(report.failed_kinds.values()) == BATCH  # none lost
            assert set(report.failed_kinds) <= {"ambiguous"}, report.failed_kinds
            assert ambiguous <= rig.concurrency  # at most what the cut-off host had on the wire
            assert settled <= CUT_FOR + 60
            if peer is Peer.REDIS:  # its intents were taken over once its heartbeat went quiet
                # Most of what was left went out during the cut (measured 519 and 445 of ~600, the
                # second in a CI run sharing the cores); the cut-off host's own wait for recovery.
                assert carried >= 0.5 * left, (carried, left)
