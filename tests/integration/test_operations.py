"""Operator commands against the running stack: dead letters and re-drive, pause and resume,
and a producer facing a broker that does not answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import producers
from tests import spec_examples as spec
from tests.harness import BIN, PHONE_NUMBER_ID, ROOT, free_port
from worker.delivery.errors import PermanentError

pytestmark = pytest.mark.integration


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERAKT_PHONE_NUMBER_ID": PHONE_NUMBER_ID}
    out = subprocess.run(
        [str(BIN / "wa-dispatch"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_failed_intents_are_kept_listed_and_redriven(api) -> None:
    api.faults({"status": 400, "code": 131047, "message": "Re-engagement message", "times": 1})
    result = producers.send_text(spec.TO, "redrive me", idempotency_key="redrive-1")
    with pytest.raises(PermanentError):
        result.get(timeout=30)

    listed = json.loads(cli("failed", "list", "--code", "131047", "--json").stdout)
    entry = next(e for e in listed if e["idempotency_key"] == "redrive-1")
    assert entry["kind"] == "permanent" and entry["attempts"] == 1 and entry["task_id"] == result.id
    assert entry["intent"]["text"] == {"preview_url": False, "body": "redrive me"}
    assert all(e["code"] == 131047 for e in listed)

    redriven = json.loads(cli("failed", "redrive", "redrive-1", "--json").stdout)
    assert [r["idempotency_key"] for r in redriven] == ["redrive-1"]
    from worker import app

    outcome = app.AsyncResult(redriven[0]["task_id"]).get(timeout=30)
    assert outcome["wamid"].startswith("wamid.") and outcome["idempotency_key"] == "redrive-1"
    assert len(api.accepted()) == 1
    assert all(
        e["idempotency_key"] != "redrive-1" for e in json.loads(cli("failed", "list", "--json").stdout)
    )


def test_redrive_of_a_key_that_was_sent_sends_nothing(api) -> None:
    from worker.services import services

    first = producers.send_text(spec.TO, "already sent", idempotency_key="sent-1").get(timeout=30)
    # an operator re-drives an entry for a key that in fact went out (e.g. an ambiguous one)
    services().send.dead.add(
        "sent-1",
        {"to": spec.TO, "type": "text", "text": {"body": "already sent"}},
        {"kind": "ambiguous", "code": None, "error": "no answer"},
        1,
        "t-1",
    )
    redriven = json.loads(cli("failed", "redrive", "sent-1", "--json").stdout)
    from worker import app

    again = app.AsyncResult(redriven[0]["task_id"]).get(timeout=30)
    assert again["wamid"] == first["wamid"] and again["duplicate"] is True
    assert len(api.accepted()) == 1


def test_pause_holds_messages_and_resume_sends_them(api) -> None:
    status = json.loads(cli("pause", "--reason", "maintenance", "--json").stdout)
    assert status["state"] == "open" and status["manual"] == "1"
    try:
        result = producers.send_text(spec.TO, "held while paused")
        time.sleep(2.5)
        assert api.requests() == [] and result.state in ("PENDING", "RETRY")
    finally:
        assert json.loads(cli("resume", "--json").stdout)["state"] == "closed"
    assert result.get(timeout=30)["wamid"].startswith("wamid.")


def test_cli_reports_bad_intents_and_unknown_tasks(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"to": "12", "type": "text", "text": {"body": "x"}}))
    out = cli("send", "-f", str(bad), "--json", check=False)
    assert out.returncode == 2
    assert json.loads(out.stdout)["errors"][0]["field"] == "to"


def test_producer_raises_a_clear_error_when_the_broker_is_down() -> None:
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DISPATCH_PUBLISH_MAX_RETRIES": "2",
    }
    script = (
        "from producers import send_text\n"
        "from worker.delivery.errors import EnqueueError\n"
        "try:\n    send_text('+919999595313', 'hi')\n"
        "except EnqueueError as exc:\n    print('EnqueueError:', exc)\n"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.startswith("EnqueueError: not enqueued: the broker did not answer"), (
        out.stdout + out.stderr
    )
    assert time.monotonic() - started < 30
