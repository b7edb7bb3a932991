"""The in-process tier: the session's redis-server and the sandbox in a thread, no worker process.

Lua scripts, the breaker, dead letters, a whole delivery and the CLI run here in milliseconds, and
their failures show as assertions, not as time-outs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from devtools.localstack import RedisServer
from devtools.sandbox import SandboxServer, SandboxState
from tests.harness import PHONE_NUMBER_ID, TOKEN, WABA_ID
from worker.delivery.send import SendServices
from worker.recovery.nodes import NODE, Registry
from worker.services import send_services
from worker.settings import Settings


@dataclass
class ThreadSandbox:
    state: SandboxState
    api_url: str

    def faults(self, *rules: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.rules = list(rules)

    def accepted(self) -> list[dict[str, Any]]:
        return [r for r in self.state.requests if r.get("wamid")]


@pytest.fixture(scope="session")
def thread_sandbox() -> Iterator[ThreadSandbox]:
    server = SandboxServer(("127.0.0.1", 0), SandboxState(TOKEN, 0.0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ThreadSandbox(server.state, f"http://127.0.0.1:{server.server_port}/api/v17.0")
    server.shutdown()
    server.server_close()


@pytest.fixture
def sandbox(thread_sandbox: ThreadSandbox) -> ThreadSandbox:
    thread_sandbox.state.reset()
    return thread_sandbox


@pytest.fixture
def r(redis_server: RedisServer) -> redis.Redis:
    """Database 1 of the session's Redis (the integration stack uses 0), emptied for this test."""
    client = redis.Redis(port=redis_server.port, db=1, decode_responses=True, socket_timeout=5)
    client.flushdb()
    return client


@pytest.fixture
def settings(sandbox: ThreadSandbox) -> Settings:
    """The production defaults, pointed at the sandbox."""
    return Settings(
        INTERAKT_API_URL=sandbox.api_url,
        INTERAKT_ACCESS_TOKEN=TOKEN,
        INTERAKT_WABA_ID=WABA_ID,
        INTERAKT_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
    )


@pytest.fixture
def send(r: redis.Redis, settings: Settings) -> SendServices:
    """A delivery's collaborators as production builds them, as this process's node: alive (it
    beats) like a worker's."""
    Registry(r, settings.heartbeat_timeout).beat(NODE)
    return send_services(settings, r)
