from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.rig import Rig
from tests.harness import tmpdir


@pytest.fixture
def rig_factory() -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(
        workers: int = 1,
        persistent_redis: bool = False,
        latency: float = 0.0,
        probe_interval: float = 1.0,
        **env: Any,
    ) -> Rig:
        rig = Rig(tmpdir("wa-fault-"), workers, persistent_redis, latency, probe_interval, **env)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop()
