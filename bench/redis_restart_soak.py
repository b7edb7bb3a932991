"""Redis-restart soak: `python -m bench.redis_restart_soak [--restarts 30] [--batch 300]`.

`make soak-restart` runs it with the defaults.

A private deployment as `make soak` has it (tests.faults.rig: redis-server with its append-only
file fsynced on every write, the sandbox at 50 ms, one worker of 64 threads at the default 80
msg/s, every other setting at its production default), then RESTARTS rounds of: BATCH intents
enqueued through the project's app (so each is in the ledger, as apps enqueue) while the worker
sends them; a third of the way in, Redis is stopped (SIGTERM: it writes its file and exits) and
started again 1.5 s later. Each round must settle every intent (a wamid, or `ambiguous` for a
request that may have reached the API), none sent twice, with nothing re-sent by hand.

A round that has not settled STALL_TIMEOUT seconds after the restart is counted: `stalled` when
the queues still hold work (the worker stopped consuming), `lost` when they are empty (a message
is nowhere); the worker is then replaced so the next round starts clean. Both are expected 0.
Also counted from the worker's log, per round: `fetch_reply_lost` (a fetch whose reply never came
back, settled by the worker through the next connection), the messages the ledger audit published
again (expected 0: the fetch takes nothing off a queue without recording it), and the round's
busiest second at the sandbox (the fault tests fail above the limit + 5 %; here it is reported,
not asserted). Prints a table: one row per restart, and the totals.

Not part of the test suite (it takes about 6 minutes); the fault test
`test_redis_restarted_while_producing_and_sending` is the one-restart version of a round.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from tests.faults.rig import PRODUCTION_RATE, Rig, _in_window
from tests.harness import tmpdir

BATCH = 300
RESTARTS = 30
DOWN_FOR = 1.5  # seconds Redis stays away, as in the fault test
STALL_TIMEOUT = 120.0  # seconds after the restart a round may take to settle before it counts
QUEUES = ("whatsapp", "whatsapp.released", "campaign")


@dataclass
class Round:
    restart: int
    intents: int
    settled: int = 0
    sent: int = 0
    ambiguous: int = 0
    settle_s: float | None = None
    outcome: str = "ok"  # ok, stalled, lost
    fetch_replies: int = 0
    republished: int = 0
    worst_second: int = 0  # requests the sandbox took in the round's busiest second


def _events(rig: Rig) -> dict[str, int]:
    counts = {"fetch_reply_lost": 0, "republished": 0}
    for worker in rig.workers:
        for line in worker.log_lines():
            event = line.get("event")
            if event in counts:
                counts[event] += 1
            elif event == "ledger_audit":
                counts["republished"] += int(line.get("republished", 0))
    return counts


def one_round(rig: Rig, k: int, batch: int) -> Round:
    before = _events(rig)
    result = Round(restart=k + 1, intents=batch)
    ids: list[str] = []
    producer = threading.Thread(target=lambda: ids.extend(rig.produce(batch, first=k * batch, pace=0.004)))
    already = len(rig.sandbox.accepted())
    started = time.time()
    producer.start()
    rig.wait_accepted(already + batch // 3)
    rig.redis.stop()
    time.sleep(DOWN_FOR)
    rig.redis.start()
    restarted = time.monotonic()
    producer.join(120)
    assert len(ids) == batch, f"round {k + 1}: {len(ids)} of {batch} enqueued"
    try:
        outcomes = rig.collect(ids, timeout=STALL_TIMEOUT)
    except AssertionError as exc:
        client = rig.redis.client()
        queued = sum(client.llen(q) for q in QUEUES)
        result.outcome = "stalled" if queued else "lost"
        print(f"round {k + 1}: {result.outcome}: {exc}", flush=True)
        rig.workers[-1].kill()  # the next round starts with a fresh worker
        rig.add_worker()
    else:
        result.settle_s = time.monotonic() - restarted
        report = rig.check(outcomes, rate_checked=False)
        assert set(report.failed_kinds) <= {"ambiguous"}, report.failed_kinds
        times = sorted(r["time"] for r in rig.sandbox.requests() if r["time"] >= started)
        result.worst_second = max((_in_window(times, i) for i in range(len(times))), default=0)
        result.settled = len(outcomes)
        result.sent = report.sent
        result.ambiguous = report.failed_kinds["ambiguous"]
    after = _events(rig)
    result.fetch_replies = after["fetch_reply_lost"] - before["fetch_reply_lost"]
    result.republished = after["republished"] - before["republished"]
    return result


def soak(restarts: int, batch: int) -> list[Round]:
    rig = Rig(
        tmpdir("wa-restart-soak-"),
        workers=1,
        persistent_redis=True,
        latency=0.05,
        probe_interval=30,
        rate_limit=PRODUCTION_RATE,
        concurrency=64,
        production_timings=True,
    )
    rounds = []
    try:
        for k in range(restarts):
            rounds.append(one_round(rig, k, batch))
            r = rounds[-1]
            took = f"{r.settle_s:.1f}s" if r.settle_s is not None else "-"
            print(
                f"restart {k + 1}/{restarts}: {r.outcome}, settled {r.settled}/{r.intents} {took}", flush=True
            )
    finally:
        rig.stop()
    return rounds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--restarts", type=int, default=RESTARTS)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    rounds = soak(args.restarts, args.batch)
    table = Table(title=f"Redis restarted mid-batch ({args.batch} intents a round, production defaults)")
    columns = (
        "restart",
        "outcome",
        "settled",
        "sent",
        "ambiguous",
        "s to settle",
        "fetch replies",
    )
    for column in (*columns, "republished", "max req/s"):
        table.add_column(column, justify="right")
    for r in rounds:
        took = f"{r.settle_s:.1f}" if r.settle_s is not None else "-"
        table.add_row(
            str(r.restart),
            r.outcome,
            f"{r.settled}/{r.intents}",
            str(r.sent),
            str(r.ambiguous),
            took,
            str(r.fetch_replies),
            str(r.republished),
            str(r.worst_second),
        )
    times = [r.settle_s for r in rounds if r.settle_s is not None]
    table.add_section()
    stalled, lost = (sum(r.outcome == kind for r in rounds) for kind in ("stalled", "lost"))
    table.add_row(
        "all",
        f"{stalled} stalled, {lost} lost",
        f"{sum(r.settled for r in rounds)}/{sum(r.intents for r in rounds)}",
        str(sum(r.sent for r in rounds)),
        str(sum(r.ambiguous for r in rounds)),
        f"median {statistics.median(times):.1f}, max {max(times):.1f}" if times else "-",
        str(sum(r.fetch_replies for r in rounds)),
        str(sum(r.republished for r in rounds)),
        f"max {max((r.worst_second for r in rounds), default=0)}",
    )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
