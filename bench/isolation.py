"""Isolation between senders: `python -m bench.isolation [--backlog 20000] [--n 5000] [--latency 0.05]`.

One pool of workers (BENCH_WORKERS processes x BENCH_THREADS threads, as in bench.throughput),
the sandbox with a response latency, and two senders: A at the 1,000 msg/s tier, B at 80 msg/s.
Prints A's end-to-end throughput and latency alone, then again while B has a backlog (enqueued
first, so it is waiting when A's intents arrive), with B's own rate over the same seconds, and
the ratio of A's throughput beside the backlog to A's alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.throughput import date_done, recipient, senders_env, stack, wait_results  # sets REDIS_URL first
from devtools.localstack import RedisServer, Sandbox
from worker.ops import logs


def enqueue(sender: str, first: int, n: int, pace: float = 0.0) -> tuple[list[str], dict[str, float]]:
    """n intents for `sender`, as an app sends them by name, `pace` a second (0: at once); their
    ids and when each was enqueued."""
    from worker import app

    started = time.time()
    ids, at = [], {}
    for i in range(first, first + n):
        if pace:
            time.sleep(max(0.0, started + (i - first) / pace - time.time()))
        intent = {"to": recipient(i), "type": "text", "text": {"body": f"{sender} {i}"}, "sender": sender}
        task_id = app.send_task("worker.tasks.send_message", kwargs=intent).id
        ids.append(task_id)
        at[task_id] = time.time()
    return ids, at


def measure_a(
    label: str, n: int, first: int, pace: float, redis_server: RedisServer, sandbox: Sandbox
) -> dict[str, Any]:
    ids, enqueued = enqueue("a", first, n, pace)
    started = min(enqueued.values())
    results = wait_results(redis_server, ids, timeout=max(120, n / 20))
    finished = {task_id: date_done(meta) for task_id, meta in results.items()}
    done = sorted(finished.values())
    latencies = sorted((finished[t] - enqueued[t]) * 1000 for t in ids)
    q = statistics.quantiles(latencies, n=100)
    window = (started, done[-1])
    b_sent = [r for r in sandbox.requests() if r.get("phone_number_id") == "pnid-b" and r.get("wamid")]
    b_in_window = [r for r in b_sent if window[0] <= r["time"] <= window[1]]
    return {
        "label": label,
        "throughput": n / (done[-1] - started),
        "p50": q[49],
        "p99": q[98],
        "b_rate": len(b_in_window) / (window[1] - window[0]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="A's intents per measurement")
    parser.add_argument("--backlog", type=int, default=20_000, help="B's backlog")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument(
        "--pace", type=float, default=0.0, help="A's intents per second (0: all at once, saturating)"
    )
    args = parser.parse_args(argv)
    logs.configure("WARNING")
    rows = []
    with stack("isolation", args.latency, senders_env(80)) as (redis_server, sandbox, _workers):
        rows.append(measure_a("A alone", args.n, 0, args.pace, redis_server, sandbox))
        enqueue("b", 1_000_000, args.backlog)
        client = redis_server.client()
        deadline = time.monotonic() + 300
        while client.llen("whatsapp") and time.monotonic() < deadline:
            time.sleep(0.5)  # B's backlog off the queue: parked, waiting for B's slots
        rows.append(
            measure_a(
                f"A beside B's backlog of {args.backlog:,}", args.n, args.n, args.pace, redis_server, sandbox
            )
        )
    offered = f"{args.pace:g}/s" if args.pace else "all at once"
    table = Table(
        title=f"Sender isolation: A at the 1,000 msg/s tier ({args.n:,} intents, {offered}), "
        f"B at 80 msg/s, API latency {args.latency * 1000:g} ms"
    )
    for col in ("run", "A msg/s", "A p50 ms", "A p99 ms", "B msg/s meanwhile"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row["label"],
            f"{row['throughput']:,.0f}",
            f"{row['p50']:,.0f}",
            f"{row['p99']:,.0f}",
            f"{row['b_rate']:.1f}",
        )
    console = Console(width=160)
    console.print(table)
    console.print(f"A beside B's backlog / A alone = {rows[1]['throughput'] / rows[0]['throughput']:.2f}")


if __name__ == "__main__":
    main()
