"""HTTP API benchmark: `python -m bench.http_api [--requests N] [--batches B] [--connections C] [--quick]`.

Starts its own redis-server (append-only file fsynced on every write, as production runs it) and
one web process (`python -m worker.web`), and measures, in the same run, what it takes to have an
intent accepted (enqueued, validated, ledgered; no worker runs, so nothing competes for the cores):

- single: N `POST /v1/messages` over C keep-alive connections (requests/s, p50/p99);
- single with Idempotency-Key: the same, each with its own key (one more Redis round trip);
- batch: B `POST /v1/messages/batch` of 1,000 intents each, one after another (accept time p50/p99);
- `send_message.delay` from Python in this process, one thread, N calls (calls/s, p50/p99).

The load generator is bench.webhooks' asyncio client over raw HTTP/1.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.webhooks import fire
from devtools.localstack import RedisServer, Web, tmpdir
from worker.web.auth import key_entry

KEY = "wad_bench-key"


@dataclass
class Figures:
    path: str
    requests: int
    intents: int
    per_s: float  # requests (or calls) per second
    intents_per_s: float
    p50_ms: float
    p99_ms: float


def figures(path: str, latencies: list[float], elapsed: float, per_request: int) -> Figures:
    latencies = sorted(latencies)
    return Figures(
        path,
        len(latencies),
        len(latencies) * per_request,
        len(latencies) / elapsed,
        len(latencies) * per_request / elapsed,
        statistics.median(latencies) * 1000,
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    )


def intent(i: int) -> dict[str, Any]:
    return {"to": f"+91987{i % 10_000_000:07d}", "type": "text", "text": {"body": f"Order {i} has shipped"}}


def post(port: int, path: str, body: Any, key: str | None = None) -> bytes:
    raw = json.dumps(body).encode()
    idempotency = f"Idempotency-Key: {key}\r\n" if key else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\n{idempotency}Content-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw


def http(path: str, port: int, requests: list[bytes], connections: int, per_request: int) -> Figures:
    started = time.perf_counter()
    latencies, answered = asyncio.run(fire(port, requests, connections, ok=202))
    return figures(path, latencies, answered - started, per_request)


def python_delay(calls: int, offset: int) -> Figures:
    """The Python path in this process: `send_message.delay`, as an app calls it."""
    from worker.ops import logs
    from worker.tasks import send_message

    logs.configure("WARNING")
    send_message.delay(**intent(offset))  # the first call connects
    latencies = []
    started = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        send_message.delay(**intent(offset + i + 1))
        latencies.append(time.perf_counter() - t)
    return figures("send_message.delay (Python, 1 thread)", latencies, time.perf_counter() - started, 1)


def run(requests: int, batches: int, connections: int) -> list[Figures]:
    workdir = tmpdir("wa-bench-api-")
    server = RedisServer(workdir, persistent=True).start()
    os.environ.update(REDIS_URL=server.url, DISPATCH_LOG_LEVEL="WARNING")  # for this process's delay()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERAKT_", "CELERY_"))}
    env.update(
        DISPATCH_API_KEYS=key_entry("bench", KEY),
        DISPATCH_API_RATE_LIMIT="1000000",  # the per-key limit is not what is measured
        INTERAKT_PHONE_NUMBER_ID="bench",
        PYTHONUNBUFFERED="1",
    )
    web = Web(workdir, env).start()
    try:
        port = web.port
        warm = [post(port, "/v1/messages", intent(i)) for i in range(200)]
        http("warm-up", port, warm, connections, 1)
        single = [post(port, "/v1/messages", intent(i)) for i in range(requests)]
        keyed = [post(port, "/v1/messages", intent(i), key=f"bench-{i}") for i in range(requests)]
        batch = [
            post(port, "/v1/messages/batch", {"messages": [intent(b * 1000 + i) for i in range(1000)]})
            for b in range(batches)
        ]
        return [
            http("single", port, single, connections, 1),
            http("single, Idempotency-Key", port, keyed, connections, 1),
            http("batch of 1,000", port, batch, 1, 1000),
            python_delay(requests, requests * 2),
        ]
    finally:
        web.stop()
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="500 requests and 3 batches, a smoke run")
    args = parser.parse_args(argv)
    requests, batches = (500, 3) if args.quick else (args.requests, args.batches)
    rows = run(requests, batches, args.connections)
    table = Table(
        title=f"HTTP API, {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{args.connections} connections for single requests",
        title_justify="left",
    )
    for column in ("path", "requests", "intents", "requests/s", "intents/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for f in rows:
        table.add_row(
            f.path,
            f"{f.requests:,}",
            f"{f.intents:,}",
            f"{f.per_s:,.0f}",
            f"{f.intents_per_s:,.0f}",
            f"{f.p50_ms:.1f}",
            f"{f.p99_ms:.1f}",
        )
    Console(width=150).print(table)
    print(json.dumps([f.__dict__ for f in rows]), file=sys.stderr)


if __name__ == "__main__":
    main()
