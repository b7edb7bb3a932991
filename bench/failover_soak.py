"""Failover soak: `python -m bench.failover_soak [--failovers 10] [--batch 1000]`.

`make soak-failover` runs it with the defaults (about 6 minutes).

Redis as production runs it (tests.faults.rig.FailoverRig: a primary, one replica and three
Sentinels on free ports, two workers of 64 threads at the default 80 msg/s, the sandbox at 50 ms,
every recovery setting at its production default), then FAILOVERS rounds of: an app enqueues
BATCH intents through `REDIS_URL=sentinel://...` faster than they are sent; a quarter of the way
through, the primary is SIGKILLed and the Sentinels promote its replica; once every intent has
settled, the killed server is started again and rejoins as the new primary's replica, so the
next round kills the other one. Each round must settle every intent whose enqueue returned (a
wamid, or `ambiguous` for a request that may have reached the API), none sent twice; the table
has one row per failover (enqueued, refused, sent, ambiguous, sent twice, lost, promotion, time
to settle) and the totals.

Not part of the test suite: `tests/faults/test_failover.py` is one round of it.
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console
from rich.table import Table

from tests.faults.rig import Failover, FailoverRig
from tests.harness import tmpdir

FAILOVERS = 10
BATCH = 1000


def soak(failovers: int, batch: int) -> list[Failover]:
    rig = FailoverRig(tmpdir("wa-failover-soak-"))
    rounds: list[Failover] = []
    try:
        for k in range(failovers):
            killed = rig.group.current()
            # The limit is reported per round, not asserted: a soak reports what it saw.
            rounds.append(rig.batch_through_failover(batch, first=k * batch, rate_checked=False))
            r = rounds[-1]
            print(
                f"failover {k + 1}/{failovers}: sent {r.sent}, ambiguous {r.ambiguous}, lost {r.lost}, "
                f"settled {r.settled_s:.1f}s after the promotion",
                flush=True,
            )
            rig.rejoin(killed)
    finally:
        rig.stop()
    return rounds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--failovers", type=int, default=FAILOVERS)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    rounds = soak(args.failovers, args.batch)
    table = Table(title=f"Primary SIGKILLed mid-batch ({args.batch} intents a round, production defaults)")
    columns = ("failover", "enqueued", "refused", "sent", "ambiguous", "other failures", "sent twice", "lost")
    for column in (*columns, "promotion s", "s to settle"):
        table.add_column(column, justify="right")
    for n, r in enumerate(rounds, 1):
        counts = (r.enqueued, r.refused, r.sent, r.ambiguous, r.other_failures, r.twice, r.lost)
        table.add_row(str(n), *map(str, counts), f"{r.promotion_s:.1f}", f"{r.settled_s:.1f}")
    table.add_section()
    settle = [r.settled_s for r in rounds]
    totals = [
        sum(getattr(r, f) for r in rounds)
        for f in ("enqueued", "refused", "sent", "ambiguous", "other_failures", "twice", "lost")
    ]
    table.add_row(
        "all",
        *map(str, totals),
        f"median {statistics.median(r.promotion_s for r in rounds):.1f}",
        f"median {statistics.median(settle):.1f}, max {max(settle):.1f}",
    )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
