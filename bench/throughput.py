"""Throughput benchmark: `python -m bench.throughput [--quick] [--n 5000] [--latency 0 0.05 0.2]`.

Starts its own redis-server, the sandbox with a response latency, and workers; enqueues N intents
and measures, in the same run, the dispatcher and the naive baseline (bench/naive.py). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import socket

with socket.socket() as _s:  # the project's app reads REDIS_URL when first imported: choose it first
    _s.bind(("127.0.0.1", 0))
    REDIS_PORT = _s.getsockname()[1]
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
for _name in [k for k in os.environ if k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))]:
    del os.environ[_name]

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from worker import logging as wa_logging  # noqa: E402
from worker.localstack import RedisServer, Sandbox, Worker, tmpdir  # noqa: E402

CREDS = {"INTERAKT_ACCESS_TOKEN": "bench-token", "INTERAKT_WABA_ID": "bench-waba",
         "INTERAKT_PHONE_NUMBER_ID": "bench-pnid"}  # fmt: skip


WORKER_PROCESSES = int(os.environ.get("BENCH_WORKERS", 2))
WORKER_THREADS = int(os.environ.get("BENCH_THREADS", 32))


def recipient(i: int) -> str:
    return f"+91987{i % 10_000_000:07d}"


@dataclass
class Figures:
    name: str
    latency_ms: float
    n: int
    enqueue_rate: float
    throughput: float
    p50: float
    p95: float
    p99: float
    cpu_ms_per_msg: float
    peak_rss_mb: float
    worst_second: int = 0


def _proc_tree(pid: int) -> list[int]:
    pids = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        pids += _proc_tree(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in _proc_tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mb(pid: int) -> float:
    total = 0
    for p in _proc_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def wait_results(redis_server: RedisServer, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    client = redis_server.client()
    done: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for start in range(0, len(pending), 1000):
            chunk = pending[start:start + 1000]
            for task_id, raw in zip(chunk, client.mget([f"celery-task-meta-{t}" for t in chunk]), strict=True):
                meta = json.loads(raw) if raw else None
                if meta and meta["status"] in ("SUCCESS", "FAILURE"):
                    done[task_id] = meta
                else:
                    still.append(task_id)
        pending = still
        if pending:
            time.sleep(0.05)
    if pending:
        raise SystemExit(f"{len(pending)} of {len(ids)} results missing after {timeout}s")
    return done


def _date(meta: dict[str, Any]) -> float:
    from datetime import datetime, timezone

    return datetime.fromisoformat(meta["date_done"]).replace(tzinfo=timezone.utc).timestamp()


def measure(name: str, latency: float, n: int, enqueue: Any, workers: list[Worker], redis_server: RedisServer,
            sandbox: Sandbox) -> Figures:  # fmt: skip
    pids = [w.proc.pid for w in workers]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    sent_at: dict[str, float] = {}
    started = time.time()
    for i in range(n):
        task_id = enqueue(i)
        sent_at[task_id] = time.time()
    enqueued = time.time()
    results = wait_results(redis_server, list(sent_at), timeout=max(120, n / 20))
    failures = [m for m in results.values() if m["status"] != "SUCCESS"]
    if failures:
        raise SystemExit(f"{name}: {len(failures)} failures, e.g. {failures[0]['result']}")
    done = {t: _date(m) for t, m in results.items()}
    lat = sorted((done[t] - sent_at[t]) * 1000 for t in sent_at)
    q = statistics.quantiles(lat, n=100)
    times = sorted(r["time"] for r in sandbox.requests())
    worst = max((sum(1 for t in times[i:i + 2000] if t - times[i] < 1.0) for i in range(len(times))), default=0)
    return Figures(name, latency * 1000, n, n / (enqueued - started), n / (max(done.values()) - started),
                   q[49], q[94], q[98], (sum(cpu_seconds(p) for p in pids) - cpu_before) / n * 1000,
                   max(peak_rss_mb(p) for p in pids), worst)  # fmt: skip


def run_one(kind: str, latency: float, n: int, extra_env: dict[str, str] | None = None) -> Figures:
    workdir = tmpdir(f"wa-bench-{kind}-")
    redis_server = RedisServer(workdir, REDIS_PORT).start()
    sandbox = Sandbox(workdir, latency=latency).start()
    env = {**os.environ, **CREDS, "INTERAKT_API_URL": sandbox.api_url, "REDIS_URL": redis_server.url,
           "DISPATCH_LOG_LEVEL": "WARNING", "DISPATCH_PAIR_BURST": "100000", **(extra_env or {})}  # fmt: skip
    try:
        if kind == "naive":
            from bench.naive import send

            workers = [Worker(workdir, env, name="naive", pool="prefork", concurrency=os.cpu_count() or 2,
                              app="bench.naive").start()]  # fmt: skip

            def enqueue(i: int) -> str:
                payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": recipient(i),
                           "type": "text", "text": {"body": f"bench {i}"}}  # fmt: skip
                return send.apply_async(args=[payload]).id
        else:
            from worker.tasks import send_message

            workers = [Worker(workdir, env, name=f"dispatch{i}", concurrency=WORKER_THREADS).start()
                       for i in range(WORKER_PROCESSES)]  # fmt: skip

            def enqueue(i: int) -> str:
                return send_message.apply_async(kwargs={"to": recipient(i), "type": "text",
                                                        "text": {"body": f"bench {i}"}}).id  # fmt: skip
        return measure(kind, latency, n, enqueue, workers, redis_server, sandbox)
    finally:
        for process in [*locals().get("workers", []), sandbox, redis_server]:
            process.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 intents, 50 ms latency only")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05, 0.2])
    parser.add_argument("--only", nargs="+", default=["single", "naive", "rate80"])
    args = parser.parse_args(argv)
    wa_logging.configure("WARNING")
    if args.quick:
        args.n, args.latency = 500, [0.05]
    console = Console()
    table = Table(title=f"whatsapp-dispatch throughput, {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                        f"Python {sys.version.split()[0]}")  # fmt: skip
    for col in ("path", "API latency ms", "N", "enqueue/s", "end-to-end msg/s", "p50 ms", "p95 ms", "p99 ms",
                "worker CPU ms/msg", "peak RSS MB", "worst 1 s window"):  # fmt: skip
        table.add_column(col, justify="right")
    rows: list[Figures] = []
    for latency in args.latency:
        for kind in args.only:
            if kind == "rate80":
                f = run_one("single", latency, min(args.n, 2000), {"DISPATCH_RATE_LIMIT": "80"})
                f.name = "single, limit 80/s"
            elif kind == "naive":
                f = run_one("naive", latency, min(args.n, 1000 if latency else args.n))
                f.name = "naive baseline"
            else:
                f = run_one(kind, latency, args.n, {"DISPATCH_RATE_LIMIT": "1000"})
            rows.append(f)
            table.add_row(f.name, f"{f.latency_ms:g}", str(f.n), f"{f.enqueue_rate:,.0f}", f"{f.throughput:,.0f}",
                          f"{f.p50:,.0f}", f"{f.p95:,.0f}", f"{f.p99:,.0f}", f"{f.cpu_ms_per_msg:.2f}",
                          f"{f.peak_rss_mb:.0f}", str(f.worst_second))  # fmt: skip
    console.print(table)
    by = {(r.name, r.latency_ms): r for r in rows}
    for latency in args.latency:
        base = by.get(("naive baseline", latency * 1000))
        single = by.get(("single", latency * 1000))
        if base and single:
            console.print(f"latency {latency * 1000:g} ms: single-intent / naive = {single.throughput / base.throughput:.1f}x")


if __name__ == "__main__":
    main()
