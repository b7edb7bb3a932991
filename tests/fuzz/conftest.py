"""The fuzz tier: property-based tests (hypothesis) of the webhook parser, the intent models and
the API's body handling, and schemathesis's stateful run, against a real web process, worker and
sandbox over the session's private redis-server (the integration tier's stack).

Bounded for `make test` (about a minute in all); FUZZ_SCALE multiplies every test's examples
for the long run (`make fuzz-long`). The number of cases run is printed at the end.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.harness import Web, tmpdir, worker_env
from tests.integration.conftest import Stack, stack  # noqa: F401 - the integration tier's fixture
from worker.web.auth import key_entry

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
CASES: Counter[str] = Counter()  # test -> cases run, for the summary

# Two keys of two senders: `default` (every task the fuzz creates) and `support` (none), so a
# task one creates must be readable by it and by no key of the other.
KEY = "wad_fuzz-default-key-6a1e"
OTHER_SENDER = "wad_fuzz-support-key-91b3"
EVERY = "wad_fuzz-every-sender-2c7d"
KEYS = ",".join(
    [
        key_entry("fuzz-default", KEY, ["default"]),
        key_entry("fuzz-support", OTHER_SENDER, ["support"]),
        key_entry("fuzz-every", EVERY),
    ]
)
SECRET = "fuzz-webhook-secret"


def examples(n: int) -> settings:
    """Hypothesis settings for `n` examples in the bounded run (FUZZ_SCALE times as many in the long one)."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


def count(name: str) -> None:
    CASES[name] += 1


@pytest.fixture(scope="session")
def web(stack: Stack) -> Iterator[Web]:  # noqa: F811 - `stack` is the fixture imported above
    env = worker_env(
        stack.redis.url,
        stack.sandbox.api_url,
        DISPATCH_API_KEYS=KEYS,
        DISPATCH_API_RATE_LIMIT="100000",
        DISPATCH_WEBHOOK_SECRET=SECRET,
    )
    process = Web(tmpdir("wa-fuzz-"), env, name="web-fuzz").start()
    yield process
    process.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CASES:
        total = sum(CASES.values())
        rows = ", ".join(f"{name} {n}" for name, n in sorted(CASES.items()))
        terminalreporter.write_line(f"fuzz: {total} cases ({rows})")
