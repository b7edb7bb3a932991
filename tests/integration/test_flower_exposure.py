"""Flower without FLOWER_BASIC_AUTH is never reachable from another machine, whatever else is set:
an INTERAKT_API_URL on localhost (an egress proxy, say) must not open the dashboard to the network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness import BIN, Process, free_port, tmpdir, wait_for, worker_env

pytestmark = pytest.mark.integration


def listening(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port`, read from the kernel's tables."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


LOOPBACK_V4 = "0100007F"  # 127.0.0.1 as the kernel writes it


def test_without_credentials_flower_listens_on_loopback_only(stack) -> None:
    port = free_port()
    workdir = tmpdir("wa-flower-")
    env = worker_env(stack.redis.url, "http://127.0.0.1:3128/api/v17.0", FLOWER_DB=str(workdir / "flower.db"))
    process = Process("flower", workdir)
    process.spawn([str(BIN / "wa-dispatch"), "flower", "--port", str(port)], env=env)
    try:
        wait_for(lambda: listening(port), 30, "flower listening")
        assert listening(port) == {LOOPBACK_V4}
        assert "listens on 127.0.0.1 only" in process.output()
    finally:
        process.stop()


def test_without_credentials_flower_refuses_a_public_address(stack) -> None:
    env = worker_env(stack.redis.url, "http://127.0.0.1:3128/api/v17.0")
    out = subprocess.run(
        [str(BIN / "wa-dispatch"), "flower", "--port", str(free_port()), "--address", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0 without FLOWER_BASIC_AUTH" in out.stderr
