"""Test settings for the local processes of devtools.localstack: credentials, and timings short
enough that faults resolve in seconds. Nothing here mocks HTTP or Redis."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from typing import Any

from devtools.localstack import (
    BIN,
    ROOT,
    Beat,
    Process,
    RedisServer,
    Sandbox,
    Web,
    Worker,
    free_port,
    tmpdir,
    wait_for,
)

__all__ = [
    "BIN",
    "PHONE_NUMBER_ID",
    "ROOT",
    "TOKEN",
    "WABA_ID",
    "Beat",
    "Process",
    "RabbitVhost",
    "RedisServer",
    "Sandbox",
    "Web",
    "Worker",
    "api_call",
    "free_port",
    "tmpdir",
    "wa_dispatch",
    "wait_for",
    "worker_env",
]

TOKEN = "test-token-SECRET-5f2c9a"


class RabbitVhost:
    """A vhost of its own on the machine's RabbitMQ (127.0.0.1:5672, guest/guest), made and
    removed with rabbitmqctl."""

    def __init__(self) -> None:
        self.name = f"wa-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.name], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", self.name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        self.url = f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name], capture_output=True)


WABA_ID = "waba-1234"
PHONE_NUMBER_ID = "1122334455"


# Fast backoff and short timeouts, so API faults resolve in seconds. Never the recovery settings
# (visibility timeout, restore interval, prefetch, heartbeat): those keep production defaults.
TEST_TIMINGS = {
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
}


def worker_env(redis_url: str, api_url: str, timings: bool = True, **overrides: str) -> dict[str, str]:
    """A worker's environment; `timings=False` keeps every production default but the rate limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "INTERAKT_API_URL": api_url,
            "INTERAKT_ACCESS_TOKEN": TOKEN,
            "INTERAKT_WABA_ID": WABA_ID,
            "INTERAKT_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            "DISPATCH_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **(TEST_TIMINGS if timings else {}),
        }
    )
    env.update(overrides)
    return env


def wa_dispatch(env: dict[str, str], *args: str, code: int = 0, timeout: float = 120) -> Any:
    """`wa-dispatch <args> --json` as an operator runs it (a process of its own, with `env`): the
    one JSON document it prints, once it exited with `code`."""
    out = subprocess.run(
        [str(BIN / "wa-dispatch"), *args, "--json"], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == code, out.stdout + out.stderr
    return json.loads(out.stdout)


def api_call(
    base: str, method: str, path: str, key: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One HTTP API request as an app makes it (a bearer key, a JSON body): its status and JSON."""
    sent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, headers=sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored_keys(client: Any) -> set[str]:
    """Every key in Redis but the recovery loop's own (its lock lives for a moment every
    DISPATCH_HEARTBEAT_INTERVAL, its audit time is set on its first tick): what an enqueue or a
    send could have written."""
    return {key for key in client.scan_iter(count=1000) if not key.startswith("wa:recovery:")}
