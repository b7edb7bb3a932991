"""Webhook benchmark: `python -m bench.webhooks [--messages N] [--connections C] [--quick]`.

Starts its own redis-server; posts three signed Meta status webhooks (sent, delivered, read) for
each of N messages over C keep-alive connections, and measures, per path in the same run:
events/s accepted (answered 200, which for this project means stored in Redis), events/s applied
(every message's status is `read` in Redis), and the accept latency p50/p99. Paths:

- dispatch: `python -m worker.web` (uvicorn) writing each body to the inbox stream, one worker
  process applying it in batches;
- naive baseline (bench/naive_webhook.py): a synchronous view that verifies and enqueues one
  Celery task per event, one worker process (threads) applying each task.

The load generator is asyncio over raw HTTP/1.1, so it costs the two cores as little as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from devtools.localstack import BIN, Process, RedisServer, Web, Worker, free_port, tmpdir, wait_for
from devtools.webhooks import signed, status_body

SECRET = "bench-secret"
PNID = "bench-pnid"


@dataclass
class Figures:
    path: str
    events: int
    accepted_per_s: float
    applied_per_s: float
    p50_ms: float
    p99_ms: float


def requests_for(messages: int, port: int) -> tuple[list[str], list[bytes]]:
    """Wire-ready requests: per message its sent, delivered and read, interleaved across messages."""
    wamids = [f"wamid.bench{i:07d}" for i in range(messages)]
    out = []
    for status in ("sent", "delivered", "read"):
        for i, wamid in enumerate(wamids):
            raw, headers = signed(status_body(PNID, wamid, status, f"+91987{i:07d}"), SECRET)
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            out.append(
                f"POST /webhooks/whatsapp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}"
                f"Content-Length: {len(raw)}\r\n\r\n".encode()
                + raw
            )
    return wamids, out


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(
        int(v) for k, _, v in (line.partition(": ") for line in lines) if k.lower() == "content-length"
    )
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def fire(
    port: int, requests: list[bytes], connections: int, ok: int = 200
) -> tuple[list[float], float]:
    """Post every request; the latency of each, and when the last answer came (perf_counter).
    Any answer but `ok` stops the run."""
    pending = iter(requests)
    latencies: list[float] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for req in pending:
            started = time.perf_counter()
            writer.write(req)
            status = await _answer(reader)
            latencies.append(time.perf_counter() - started)
            if status != ok:
                raise RuntimeError(f"HTTP {status}")
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, time.perf_counter()


def all_read(client: redis.Redis, wamids: list[str]) -> Callable[[], bool]:
    left = list(wamids)

    def check() -> bool:
        pipe = client.pipeline(transaction=False)
        for wamid in left:
            pipe.hget(f"wa:status:{wamid}", "status")
        left[:] = [w for w, s in zip(list(left), pipe.execute(), strict=True) if s != "read"]
        return not left

    return check


def measure(name: str, port: int, client: redis.Redis, messages: int, connections: int) -> Figures:
    wamids, reqs = requests_for(messages, port)
    started = time.perf_counter()
    latencies, answered = asyncio.run(fire(port, reqs, connections))
    wait_for(all_read(client, wamids), 600, f"{name}: every status applied", interval=0.1)
    applied = time.perf_counter()
    latencies.sort()
    return Figures(
        name,
        len(reqs),
        len(reqs) / (answered - started),
        len(reqs) / (applied - started),
        statistics.median(latencies) * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))}
    env.update(
        REDIS_URL=url,
        DISPATCH_WEBHOOK_SECRET=SECRET,
        INTERAKT_PHONE_NUMBER_ID=PNID,
        DISPATCH_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


def measured(
    name: str, url: str, port: int, started: list[Process], messages: int, connections: int
) -> Figures:
    """Measure one path, then stop what it started."""
    try:
        return measure(name, port, redis.Redis.from_url(url, decode_responses=True), messages, connections)
    finally:
        for process in reversed(started):
            process.stop()


def run_dispatch(
    workdir: Path, url: str, messages: int, connections: int, status_task: str | None = None
) -> Figures:
    env = env_for(url)
    if status_task:  # each change tells the app's task (queued to `celery`, which nothing reads here)
        env["DISPATCH_STATUS_TASK"] = status_task
    web = Web(workdir, env).start()
    worker = Worker(workdir, env, url, concurrency=4).start()
    return measured("dispatch", url, web.port, [web, worker], messages, connections)


def run_naive(workdir: Path, url: str, messages: int, connections: int) -> Figures:
    env = env_for(url)
    port = free_port()
    web = Process("naive-web", workdir)
    uvicorn = [str(BIN / "uvicorn"), "bench.naive_webhook:web", "--port", str(port), "--no-access-log"]
    web.spawn([*uvicorn, "--log-level", "warning"], env=env)
    wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1), 30, "naive web")
    worker = Worker(
        workdir,
        env,
        url,
        "naive-worker",
        app="bench.naive_webhook",
        concurrency=16,
        args=("-Q", "naive_webhook"),
    )
    return measured("naive baseline", url, port, [web, worker.start()], messages, connections)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages; three events each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="300 messages, a smoke run")
    parser.add_argument(
        "--status-task", default=None, help="DISPATCH_STATUS_TASK for the dispatch path (the app is told)"
    )
    parser.add_argument("--dispatch-only", action="store_true", help="skip the naive baseline")
    args = parser.parse_args(argv)
    messages = 300 if args.quick else args.messages
    workdir = tmpdir("wa-bench-hooks-")
    server = RedisServer(workdir, persistent=True).start()  # as production runs it: every write fsynced
    try:
        rows = []
        base = server.url.rsplit("/", 1)[0]
        rows.append(run_dispatch(workdir, f"{base}/1", messages, args.connections, args.status_task))
        if not args.dispatch_only:
            rows.append(run_naive(workdir, f"{base}/2", messages, args.connections))
    finally:
        server.stop()
    table = Table(
        title=f"webhooks, {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{args.connections} connections",
        title_justify="left",
    )
    for column in (
        "path",
        "events",
        "accepted events/s",
        "applied events/s",
        "accept p50 ms",
        "accept p99 ms",
    ):
        table.add_column(column, justify="left" if column == "path" else "right")
    for f in rows:
        table.add_row(
            f.path,
            str(f.events),
            f"{f.accepted_per_s:,.0f}",
            f"{f.applied_per_s:,.0f}",
            f"{f.p50_ms:.1f}",
            f"{f.p99_ms:.1f}",
        )
    Console().print(table)
    print(json.dumps([f.__dict__ for f in rows]), file=sys.stderr)


if __name__ == "__main__":
    main()
