from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness import TOKEN, RedisServer, Sandbox, Worker, free_port, tmpdir, worker_env


@dataclass
class Stack:
    redis: RedisServer
    sandbox: Sandbox
    worker: Worker
    metrics_port: int


@pytest.fixture(scope="session")
def stack(redis_server: RedisServer) -> Iterator[Stack]:
    # A deployment starts on an empty Redis: the in-process tier shares this server, and what its
    # code published through the app (a template re-sync after a 132000) would otherwise be
    # taken by this worker during the first integration test.
    redis_server.client().flushdb()
    workdir = tmpdir("wa-it-")
    sandbox = Sandbox(workdir, token=TOKEN).start()
    metrics_port = free_port()
    env = worker_env(redis_server.url, sandbox.api_url, DISPATCH_METRICS_PORT=str(metrics_port))
    worker = Worker(workdir, env, redis_server.url).start()
    yield Stack(redis_server, sandbox, worker, metrics_port)
    worker.stop()
    sandbox.stop()


@pytest.fixture
def api(stack: Stack) -> Sandbox:
    """The sandbox, emptied of records and faults for this test."""
    stack.sandbox.reset()
    return stack.sandbox
