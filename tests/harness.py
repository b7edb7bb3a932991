"""Real processes for the integration and fault tests: redis-server, the sandbox API, celery workers.

Each starts on a free loopback port, writes its output to a file the test can read, and can be
stopped (and restarted) by the test. Nothing here mocks HTTP or Redis.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "test-token-SECRET-5f2c9a"
WABA_ID = "waba-1234"
PHONE_NUMBER_ID = "1122334455"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the service is still starting
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s ({last!r})")


class Process:
    """A child process whose combined output goes to a log file."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        log.close()

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(Process):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__("redis", workdir)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir

    def start(self) -> RedisServer:
        self.spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(self.workdir)])  # fmt: skip
        wait_for(lambda: self.client().ping(), 10, "redis-server")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)


class Sandbox(Process):
    def __init__(self, workdir: Path, latency: float = 0.0) -> None:
        super().__init__("sandbox", workdir)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base}/api/v17.0"
        self.latency = latency

    def start(self) -> Sandbox:
        self.spawn([sys.executable, "-m", "worker.sandbox", "--port", str(self.port), "--token", TOKEN,
                    "--latency", str(self.latency)])  # fmt: skip
        wait_for(lambda: self._call("GET", "/_sandbox/health")["ok"], 10, "sandbox")
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def faults(self, *rules: dict[str, Any], latency: float | None = None) -> None:
        payload: dict[str, Any] = {"rules": list(rules)}
        if latency is not None:
            payload["latency"] = latency
        self._call("POST", "/_sandbox/faults", payload)

    def reset(self) -> None:
        self._call("POST", "/_sandbox/reset", {})

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sandbox/requests")["requests"]

    def accepted(self) -> list[dict[str, Any]]:
        """Messages the API took: these reached the customer in real life."""
        return [r for r in self.requests() if r.get("wamid")]


def worker_env(redis_url: str, api_url: str, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))}
    env.update({
        "REDIS_URL": redis_url,
        "INTERAKT_API_URL": api_url,
        "INTERAKT_ACCESS_TOKEN": TOKEN,
        "INTERAKT_WABA_ID": WABA_ID,
        "INTERAKT_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        # Test timings: fast backoff, short timeouts, so faults resolve in seconds.
        "DISPATCH_READ_TIMEOUT": "2",
        "DISPATCH_CONNECT_TIMEOUT": "1",
        "DISPATCH_INLINE_ATTEMPTS": "3",
        "DISPATCH_INLINE_BACKOFF": "0.05",
        "DISPATCH_INLINE_MAX_WAIT": "2",
        "DISPATCH_REQUEUE_BACKOFF": "0.5",
        "DISPATCH_REQUEUE_MAX_WAIT": "5",
        "DISPATCH_MAX_ATTEMPTS": "6",
        "DISPATCH_RATE_LIMIT": "1000",
        "DISPATCH_PAIR_BURST": "100000",
        "DISPATCH_BREAKER_PROBE_INTERVAL": "1",
        "DISPATCH_VISIBILITY_TIMEOUT": "20",
        "DISPATCH_RESTORE_INTERVAL": "1",
        "DISPATCH_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })  # fmt: skip
    env.update(overrides)
    return env


class Worker(Process):
    def __init__(self, workdir: Path, env: dict[str, str], name: str = "worker", pool: str = "threads",
                 concurrency: int = 8) -> None:  # fmt: skip
        super().__init__(name, workdir)
        self.env = env
        self.pool = pool
        self.concurrency = concurrency

    def start(self) -> Worker:
        hostname = f"{self.name}-{os.getpid()}@{socket.gethostname()}"
        self.spawn([str(BIN / "celery"), "-A", "worker", "worker", "--pool", self.pool,
                    "--concurrency", str(self.concurrency), "--loglevel", "INFO", "--without-gossip",
                    "--without-mingle", "--hostname", hostname], env=self.env)  # fmt: skip
        control = Celery(broker=self.env["REDIS_URL"]).control
        try:
            wait_for(lambda: control.ping(destination=[hostname], timeout=0.5), 30, f"celery {self.name}", 0.1)
        finally:
            control.app.close()
        return self

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.output().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
