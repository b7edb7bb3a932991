"""`make run` on a machine with nothing running: it starts Redis, the sandbox and a worker itself."""

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT, free_port

pytestmark = pytest.mark.integration


def test_demo_starts_what_is_missing_and_shows_a_wamid_per_type() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))}
    env.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", COLUMNS="200")  # nothing listens there yet
    out = subprocess.run([sys.executable, "-m", "producers.demo"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "starting a private redis-server" in out.stdout
    assert "SANDBOX MODE" in out.stdout
    rows = [line for line in out.stdout.splitlines() if "SUCCESS" in line]
    kinds = ["text", "reply", "image", "video", "audio", "document", "sticker", "location", "contacts", "reaction",
             "buttons", "list", "product", "product_list", "catalog", "template", "mark_read"]  # fmt: skip
    assert len(rows) == len(kinds)
    assert sum("wamid." in row for row in rows) == len(kinds) - 1  # mark_read answers success=True
    assert any("success=True" in row for row in rows)
