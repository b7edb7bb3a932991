"""`make run` exactly as a newcomer types it: a fresh clone, no REDIS_*, CELERY_*, INTERAKT_* or
DISPATCH_* variables, once with the machine's Redis answering on 6379 and once with none there.

The clone is the working tree's tracked (and not ignored) files copied to a new folder, so the
test sees uncommitted changes too; its first `make run` creates its own `.venv` as a newcomer's
does. "None answering" runs in a network namespace of its own, where nothing listens on 6379.
Every process `make run` starts runs with the clone as its working directory: none may be left
once it has ended, whichever way it ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import ROOT, RedisServer, tmpdir, wait_for

pytestmark = pytest.mark.integration

KINDS = [
    "text",
    "reply",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "reaction",
    "buttons",
    "list",
    "product",
    "product_list",
    "catalog",
    "template",
    "otp",
    "order_details",
    "order_status",
    "flow",
    "cta_url",
    "location_request",
    "address_request",
    "carousel",
    "mark_read",
]


def newcomer_env() -> dict[str, str]:
    prefixes = ("REDIS_", "CELERY_", "INTERAKT_", "DISPATCH_", "PYTEST_", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["COLUMNS"] = "200"  # rich folds the table to the terminal width; a pipe has none
    return env


def processes_in(folder: Path) -> list[str]:
    """Command lines of the processes whose working directory is `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    folder = tmpdir("wa-clone-") / "whatsapp-dispatch"
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    yield folder.resolve()
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_on_6379() -> Iterator[None]:
    """The machine's Redis, as on a developer's machine; a private one on 6379 where there is none."""
    try:
        redis.Redis(port=6379, socket_connect_timeout=1).ping()
        yield
    except redis.RedisError:
        server = RedisServer(tmpdir("wa-6379-"), 6379).start()
        yield
        server.stop()


def make_run(clone: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [*prefix, "make", "run"], cwd=clone, env=newcomer_env(), capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out


def assert_one_outcome_per_type(stdout: str) -> None:
    rows = [line for line in stdout.splitlines() if "SUCCESS" in line]
    assert [row.split("│")[1].strip() for row in rows] == KINDS, stdout
    assert sum("wamid." in row for row in rows) == len(KINDS) - 1
    assert "success=True" in rows[-1]
    # The second table: every sent message followed to `read` through the sandbox's webhooks.
    statuses = stdout.split("Delivery statuses")[1].splitlines()
    assert sum(line.rstrip(" │").endswith("read") for line in statuses) == len(KINDS) - 1, stdout


def test_make_run_uses_the_redis_that_answers(clone, redis_on_6379) -> None:
    out = make_run(clone)
    assert "Redis answers at localhost:6379" in out.stdout
    assert "SANDBOX MODE" in out.stdout
    assert_one_outcome_per_type(out.stdout)
    assert processes_in(clone) == []


def test_make_run_starts_redis_where_none_answers(clone) -> None:
    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root")
    # The venv is installed with the network; the namespace below has none.
    subprocess.run(
        ["make", "install"], cwd=clone, env=newcomer_env(), check=True, capture_output=True, timeout=600
    )
    out = make_run(clone, "unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")
    assert "No Redis at port 6379: starting a private redis-server there" in out.stdout
    assert_one_outcome_per_type(out.stdout)
    assert processes_in(clone) == []


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_what_make_run_started_stops_with_it(clone, redis_on_6379, how) -> None:
    run = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=newcomer_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: any(" worker " in cmd for cmd in processes_in(clone)), 120, "the demo's worker")
        assert any("devtools.sandbox" in cmd for cmd in processes_in(clone))
        if how == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)  # what the terminal sends to make and the demo
        else:  # the demo itself killed outright (an OOM kill): the kernel tells its children
            demo = subprocess.run(
                ["pgrep", "-f", "-g", str(run.pid), "devtools.demo"], capture_output=True, text=True
            ).stdout.split()
            assert demo, "the demo process was not found"
            os.kill(int(demo[0]), signal.SIGKILL)
        run.wait(60)
        deadline = time.monotonic() + 30  # a worker's warm shutdown takes a moment
        while processes_in(clone) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_in(clone) == []
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
