"""Throughput benchmark: `python -m bench.throughput [--quick] [--n N] [--latency 0 0.05 0.2] [--only ...]`.

Starts its own redis-server, the sandbox with a response latency, and BENCH_WORKERS worker processes
(threads pool, BENCH_THREADS each: the Procfile's 64 unless set; logging at BENCH_LOG_LEVEL,
WARNING unless set); sends N intents and measures, in the same run, the single-intent path, a
campaign fan-out, the naive baseline (bench/naive.py), Celery's own ceiling (bench/bare.py: a task
that only sleeps the latency), the 80/s limit, transactional latency during a campaign, two
senders' campaigns at once (`--only two-senders`), and (`--only soak`) memory over a long run.
Prints a table. Every path runs with the guarantees on: idempotency records, the shared rate
limiter, one result per message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with socket.socket() as _s:  # the project's app reads REDIS_URL when first imported: choose it first
    _s.bind(("127.0.0.1", 0))
    REDIS_PORT = _s.getsockname()[1]
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"
for _name in [k for k in os.environ if k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))]:
    del os.environ[_name]


from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from devtools.localstack import RedisServer, Sandbox, Worker, tmpdir  # noqa: E402
from worker.ops import logs  # noqa: E402

CREDS = {
    "INTERAKT_ACCESS_TOKEN": "bench-token",
    "INTERAKT_WABA_ID": "bench-waba",
    "INTERAKT_PHONE_NUMBER_ID": "bench-pnid",
}


WORKER_PROCESSES = int(os.environ.get("BENCH_WORKERS", 2))
WORKER_THREADS = int(os.environ.get("BENCH_THREADS", 64))  # the Procfile's --concurrency


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
    sandbox_cpu_ms: float = 0.0
    redis_cpu_ms: float = 0.0
    rss_series: list[float] = field(default_factory=list)


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


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A worker's resident memory (its peak, VmHWM, or now, VmRSS), its children's included."""
    total = 0
    for p in _proc_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1])
    return total / 1024


class RssSampler:
    """The largest worker's resident memory every `every` seconds while a run lasts, to show
    whether memory stays flat (the peak alone cannot say)."""

    def __init__(self, pids: list[int], every: float = 5.0) -> None:
        self.pids = pids
        self.every = every
        self.series: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.series.append(max(rss_mb(p, "VmRSS") for p in self.pids))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


FLAME_DIR: Path | None = None  # --flame: where a py-spy flame graph of each run goes


def flame_graph(pid: int, label: str) -> subprocess.Popen[bytes] | None:
    """Sample one worker process (all its threads) with py-spy while a run lasts, at a low rate
    and without pausing it, so the figures stay those of an unobserved worker."""
    if FLAME_DIR is None:
        return None
    FLAME_DIR.mkdir(parents=True, exist_ok=True)
    out = FLAME_DIR / f"flame-{label.replace(' ', '-').replace(',', '')}.svg"
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "50"]
    command += ["--nonblocking", "--format", "flamegraph", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_results(redis_server: RedisServer, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    client = redis_server.client()
    done: dict[str, dict[str, Any]] = {}
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for start in range(0, len(pending), 1000):
            chunk = pending[start : start + 1000]
            for task_id, raw in zip(
                chunk, client.mget([f"celery-task-meta-{t}" for t in chunk]), strict=True
            ):
                meta = json.loads(raw) if raw else None
                if meta and meta["status"] in ("SUCCESS", "FAILURE"):
                    done[task_id] = meta
                else:
                    still.append(task_id)
        pending = still
        if pending:
            time.sleep(0.5)  # polling costs the machine CPU the system under test needs
    if pending:
        raise SystemExit(f"{len(pending)} of {len(ids)} results missing after {timeout}s")
    return done


def date_done(meta: dict[str, Any]) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(meta["date_done"]).replace(tzinfo=UTC).timestamp()


def measure(
    name: str,
    latency: float,
    n: int,
    enqueue: Any,
    workers: list[Worker],
    redis_server: RedisServer,
    sandbox: Sandbox,
    kick: Any = None,
    started: float | None = None,
) -> Figures:
    """Enqueue (or `kick` off) n messages, wait for every result, and read the figures."""
    pids = [w.proc.pid for w in workers]
    profiler = flame_graph(pids[0], f"{name}-{latency * 1000:g}ms")
    cpu_before = sum(cpu_seconds(p) for p in pids)
    others_before = (cpu_seconds(sandbox.proc.pid), cpu_seconds(redis_server.proc.pid))
    sent_at: dict[str, float] = {}
    started = started or time.time()
    with RssSampler(pids) as rss:
        if kick:
            kick()
        for i in range(n):
            task_id = enqueue(i)
            sent_at[task_id] = started if kick else time.time()
        enqueued = time.time()
        results = wait_results(redis_server, list(sent_at), timeout=max(120, n / 20))
    if profiler:
        profiler.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        profiler.wait(60)
    failures = [m for m in results.values() if m["status"] != "SUCCESS"]
    if failures:
        raise SystemExit(f"{name}: {len(failures)} failures, e.g. {failures[0]['result']}")
    done = {t: date_done(m) for t, m in results.items()}
    lat = sorted((done[t] - sent_at[t]) * 1000 for t in sent_at)
    q = statistics.quantiles(lat, n=100)
    times = sorted(r["time"] for r in sandbox.requests())
    worst = max(
        (sum(1 for t in times[i : i + 2000] if t - times[i] < 1.0) for i in range(len(times))), default=0
    )
    return Figures(
        name,
        latency * 1000,
        n,
        n / (enqueued - started),
        n / (max(done.values()) - started),
        q[49],
        q[94],
        q[98],
        (sum(cpu_seconds(p) for p in pids) - cpu_before) / n * 1000,
        max(rss_mb(p) for p in pids),
        worst,
        (cpu_seconds(sandbox.proc.pid) - others_before[0]) / n * 1000,
        (cpu_seconds(redis_server.proc.pid) - others_before[1]) / n * 1000,
        rss.series,
    )


@contextmanager
def stack(
    kind: str, latency: float, extra_env: dict[str, str]
) -> Iterator[tuple[RedisServer, Sandbox, list[Worker]]]:
    workdir = tmpdir(f"wa-bench-{kind}-")
    redis_server = RedisServer(workdir, REDIS_PORT).start()
    sandbox = Sandbox(workdir, latency=latency).start()
    env = {
        **os.environ,
        **CREDS,
        "INTERAKT_API_URL": sandbox.api_url,
        "REDIS_URL": redis_server.url,
        "DISPATCH_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "DISPATCH_PAIR_BURST": "100000",
        "DISPATCH_CAMPAIGN_THREADS": str(WORKER_THREADS),
        **extra_env,
    }
    workers: list[Worker] = []
    try:
        if kind == "bare":
            bare_env = {**env, "BENCH_LATENCY": str(latency)}
            workers.extend(
                Worker(
                    workdir,
                    bare_env,
                    redis_server.url,
                    name=f"bare{i}",
                    concurrency=WORKER_THREADS,
                    app="bench.bare",
                ).start()
                for i in range(WORKER_PROCESSES)
            )
        elif kind == "naive":
            workers.append(
                Worker(
                    workdir,
                    env,
                    redis_server.url,
                    name="naive",
                    pool="prefork",
                    concurrency=os.cpu_count() or 2,
                    app="bench.naive",
                ).start()
            )
        else:
            workers.extend(
                Worker(
                    workdir, env, redis_server.url, name=f"dispatch{i}", concurrency=WORKER_THREADS
                ).start()
                for i in range(WORKER_PROCESSES)
            )
        yield redis_server, sandbox, workers
    finally:
        for process in [*workers, sandbox, redis_server]:
            process.stop()


def text_intent(i: int) -> dict[str, Any]:
    return {"to": recipient(i), "type": "text", "text": {"body": f"bench {i}"}}


def run_single(latency: float, n: int, env: dict[str, str], name: str = "single") -> Figures:
    from worker.tasks import send_message

    with stack("single", latency, env) as (redis_server, sandbox, workers):
        return measure(
            name,
            latency,
            n,
            lambda i: send_message.apply_async(kwargs=text_intent(i)).id,
            workers,
            redis_server,
            sandbox,
        )


def run_naive(latency: float, n: int) -> Figures:
    from bench.naive import send

    def enqueue(i: int) -> str:
        return send.apply_async(
            args=[{"messaging_product": "whatsapp", "recipient_type": "individual", **text_intent(i)}]
        ).id

    with stack("naive", latency, {}) as (redis_server, sandbox, workers):
        return measure("naive baseline", latency, n, enqueue, workers, redis_server, sandbox)


def run_bare(latency: float, n: int) -> Figures:
    """Celery's own ceiling: the same workers' shape running a task that only sleeps the latency."""
    from bench.bare import send

    with stack("bare", latency, {}) as (redis_server, sandbox, workers):
        return measure(
            "bare Celery ceiling",
            latency,
            n,
            lambda i: send.apply_async(args=[i]).id,
            workers,
            redis_server,
            sandbox,
        )


def load_campaign(name: str, n: int, offset: int = 0, sender: str | None = None) -> None:
    from worker import app
    from worker.campaigns.schedule import save
    from worker.campaigns.spec import Audience, Campaign, Schedule

    rows = [{"phone": recipient(offset + i), "first_name": f"N{i}"} for i in range(n)]
    save(
        app,
        Campaign(
            name=name,
            schedule=Schedule(every=86400),
            audience=Audience(numbers=[r["phone"] for r in rows]),
            message={"type": "text", "text": {"body": "Hello {first_name}"}},
            rows=rows,
            sender=sender,
        ),
    )


def run_campaign_fanout(latency: float, n: int, env: dict[str, str]) -> Figures:
    """One campaign of n recipients: from the run's enqueue to the last per-recipient result stored."""
    from worker.campaigns.fanout import recipient_task_id
    from worker.campaigns.spec import run_key
    from worker.tasks import run_campaign

    with stack("campaign", latency, env) as (redis_server, sandbox, workers):
        load_campaign("bench", n)
        ids = [recipient_task_id(run_key("bench", "r1", recipient(i))) for i in range(n)]
        started = time.time()
        figures = measure(
            "campaign fan-out",
            latency,
            n,
            lambda i: ids[i],
            workers,
            redis_server,
            sandbox,
            kick=lambda: run_campaign.apply_async(kwargs={"name": "bench", "run_id": "r1"}),
            started=started,
        )
        figures.enqueue_rate = float("nan")
        return figures


SENDERS = """
[senders.a]
phone_number_id = "pnid-a"
waba_id = "waba-a"
token_env = "A_TOKEN"
rate_limit = 1000

[senders.b]
phone_number_id = "pnid-b"
waba_id = "waba-b"
token_env = "B_TOKEN"
rate_limit = {b_rate}
"""


def senders_env(b_rate: int) -> dict[str, str]:
    """A senders file of two numbers, `a` at the 1,000 msg/s tier and `b` at `b_rate`."""
    path = tmpdir("wa-bench-senders-") / "senders.toml"
    path.write_text(SENDERS.format(b_rate=b_rate))
    return {"DISPATCH_SENDERS": str(path), "A_TOKEN": "tok-a", "B_TOKEN": "tok-b"}


def run_two_senders(latency: float, n: int) -> Figures:
    """Two numbers at the 1,000 msg/s tier, each running a campaign of n/2 at once."""
    from worker.campaigns.fanout import recipient_task_id
    from worker.campaigns.spec import run_key
    from worker.tasks import run_campaign

    half = n // 2
    with stack("two", latency, senders_env(1000)) as (redis_server, sandbox, workers):
        for sender in ("a", "b"):
            load_campaign(f"bench-{sender}", half, offset=0 if sender == "a" else half, sender=sender)
        ids = [recipient_task_id(run_key("bench-a", "r1", recipient(i))) for i in range(half)]
        ids += [recipient_task_id(run_key("bench-b", "r1", recipient(half + i))) for i in range(half)]

        def kick() -> None:
            for sender in ("a", "b"):
                run_campaign.apply_async(kwargs={"name": f"bench-{sender}", "run_id": "r1"})

        figures = measure(
            "two senders' campaigns",
            latency,
            2 * half,
            lambda i: ids[i],
            workers,
            redis_server,
            sandbox,
            kick=kick,
        )
        figures.enqueue_rate = float("nan")
        return figures


def run_transactional_during_campaign(latency: float) -> Figures:
    """At the 80/s limit, a campaign drains while single messages are enqueued 5 per second."""
    from worker.tasks import run_campaign, send_message

    with stack("mixed", latency, {"DISPATCH_RATE_LIMIT": "80"}) as (redis_server, sandbox, workers):
        load_campaign("drain", 3000, offset=100_000)
        run_campaign.apply_async(kwargs={"name": "drain", "run_id": "r1"})
        time.sleep(3)

        def enqueue(i: int) -> str:
            time.sleep(0.2)
            return send_message.apply_async(kwargs=text_intent(i)).id

        return measure(
            "transactional during an 80/s campaign", latency, 100, enqueue, workers, redis_server, sandbox
        )


TOP = {"DISPATCH_RATE_LIMIT": "1000"}


def run_kind(kind: str, latency: float, n: int, soak: int) -> Figures:
    """One row of the table."""
    naive_n = min(n, {0.0: n}.get(latency, max(200, int(60 / max(latency, 0.01)))))
    runs = {
        "single": lambda: run_single(latency, n, TOP),
        "naive": lambda: run_naive(latency, naive_n),
        "bare": lambda: run_bare(latency, n),
        "campaign": lambda: run_campaign_fanout(latency, n, TOP),
        "rate80": lambda: run_single(
            latency, min(n, 2000), {"DISPATCH_RATE_LIMIT": "80"}, name="single, limit 80/s"
        ),
        "transactional": lambda: run_transactional_during_campaign(latency),
        "two-senders": lambda: run_two_senders(latency, n),
        "soak": lambda: run_single(latency, soak, TOP, name=f"soak {soak:,}"),
    }
    return runs[kind]()


def memory_over_time(f: Figures) -> str:
    """The soak's resident memory at each tenth of the run, and how much the second half added."""
    series = f.rss_series
    tenths = [series[min(len(series) - 1, len(series) * k // 10)] for k in range(10)] + [series[-1]]
    half = len(series) // 2
    return (
        f"{f.name}: largest worker's RSS MB at each tenth of the run: "
        + " ".join(f"{mb:.0f}" for mb in tenths)
        + f"; second half's peak minus first half's: {max(series[half:]) - max(series[:half]):+.1f} MB"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 intents, 50 ms latency only")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05, 0.2])
    parser.add_argument(
        "--only",
        nargs="+",
        default=["single", "campaign", "naive", "bare"],
        choices=["single", "campaign", "naive", "bare", "rate80", "transactional", "two-senders", "soak"],
    )
    parser.add_argument(
        "--flame",
        type=Path,
        help="write a py-spy flame graph of each run into this folder (the sampling slows the workers)",
    )
    parser.add_argument(
        "--soak", type=int, default=50_000, help="messages in the `soak` run (memory over time)"
    )
    args = parser.parse_args(argv)
    global FLAME_DIR
    FLAME_DIR = args.flame
    logs.configure("WARNING")
    if args.quick:
        args.n, args.latency = 500, [0.05]
        args.only = ["single", "campaign", "naive", "bare", "rate80", "transactional"]
    console = Console(width=200)
    table = Table(
        title=f"whatsapp-dispatch throughput, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, "
        f"Python {sys.version.split()[0]}"
    )
    for col in (
        "path",
        "API latency ms",
        "N",
        "enqueue/s",
        "end-to-end msg/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "worker CPU ms/msg",
        "sandbox CPU ms/msg",
        "redis CPU ms/msg",
        "peak RSS MB",
        "worst 1 s window",
    ):
        table.add_column(col, justify="right")
    rows: list[Figures] = []
    for latency in args.latency:
        for kind in args.only:
            f = run_kind(kind, latency, args.n, args.soak)
            rows.append(f)
            table.add_row(
                f.name,
                f"{f.latency_ms:g}",
                str(f.n),
                f"{f.enqueue_rate:,.0f}",
                f"{f.throughput:,.0f}",
                f"{f.p50:,.0f}",
                f"{f.p95:,.0f}",
                f"{f.p99:,.0f}",
                f"{f.cpu_ms_per_msg:.2f}",
                f"{f.sandbox_cpu_ms:.2f}",
                f"{f.redis_cpu_ms:.2f}",
                f"{f.peak_rss_mb:.0f}",
                str(f.worst_second),
            )
    console.print(table)
    for line in summaries(rows, args.latency):
        console.print(line)


def summaries(rows: list[Figures], latencies: list[float]) -> list[str]:
    """Below the table: each path's ratio to the baselines of its latency, and the soak's memory."""
    lines = [memory_over_time(f) for f in rows if f.name.startswith("soak") and len(f.rss_series) >= 10]
    by = {(r.name, r.latency_ms): r for r in rows}
    for latency in latencies:
        for baseline in ("naive baseline", "bare Celery ceiling"):
            base = by.get((baseline, latency * 1000))
            for path in ("single", "campaign fan-out"):
                mine = by.get((path, latency * 1000))
                if base and mine:
                    lines.append(
                        f"latency {latency * 1000:g} ms: {path} / {baseline} = "
                        f"{mine.throughput / base.throughput:.2f}x"
                    )
    return lines


if __name__ == "__main__":
    main()
