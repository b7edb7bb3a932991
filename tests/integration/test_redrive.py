"""Re-drive never loses a dead letter: the entry goes only once its intent is enqueued."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import producers
from tests import spec_examples as spec
from tests.harness import BIN, PHONE_NUMBER_ID, free_port
from worker.delivery.errors import PermanentError

pytestmark = pytest.mark.integration


def redrive(key: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERAKT_PHONE_NUMBER_ID": PHONE_NUMBER_ID, **env}
    return subprocess.run(
        [str(BIN / "wa-dispatch"), "failed", "redrive", key, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_redrive_whose_enqueue_fails_keeps_the_dead_letter(stack, api) -> None:
    from worker import app
    from worker.delivery.idempotency import PREFIX
    from worker.services import services

    api.faults({"status": 400, "code": 131047, "message": "Re-engagement message", "times": 1})
    with pytest.raises(PermanentError):
        producers.send_text(spec.TO, "keep me", idempotency_key="keep-1").get(timeout=30)

    # The broker is away (the state store answers): the enqueue fails after its publish retries.
    out = redrive("keep-1", CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert out.returncode == 1, out.stdout + out.stderr
    [row] = json.loads(out.stdout)
    assert row["task_id"] is None and "not enqueued" in row["error"]
    [entry] = [e for e in services().send.dead.list() if e["idempotency_key"] == "keep-1"]
    assert entry["code"] == 131047
    assert stack.redis.client().hget(PREFIX + "keep-1", "state") == "failed"

    out = redrive("keep-1")  # the broker is back
    assert out.returncode == 0, out.stdout + out.stderr
    [row] = json.loads(out.stdout)
    assert app.AsyncResult(row["task_id"]).get(timeout=30)["wamid"].startswith("wamid.")
    assert not [e for e in services().send.dead.list() if e["idempotency_key"] == "keep-1"]
    assert len(api.accepted()) == 1
