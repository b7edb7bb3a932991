"""Several senders from one deployment: each message goes out through its own sender's number,
account and token, and no other; unknown senders and broken files are refused, nothing sent."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.harness import (
    BIN,
    PHONE_NUMBER_ID,
    ROOT,
    TOKEN,
    WABA_ID,
    RedisServer,
    Sandbox,
    Worker,
    stored_keys,
    tmpdir,
    wa_dispatch,
    wait_for,
    worker_env,
)
from worker.delivery.errors import InvalidIntent

pytestmark = pytest.mark.integration

SENDERS = """
[senders.support]
phone_number_id = "1111111111"
waba_id = "waba-support"
token_env = "SUPPORT_TOKEN"
rate_limit = 1000

[senders.marketing]
phone_number_id = "2222222222"
waba_id = "waba-marketing"
token_file = "{token_file}"
api_url = "{api_url}"
"""
EXPECTED = {  # sender -> (phone_number_id in the path, x-access-token, x-waba-id)
    "default": (PHONE_NUMBER_ID, TOKEN, WABA_ID),
    "support": ("1111111111", "tok-support-7c1d", "waba-support"),
    "marketing": ("2222222222", "tok-marketing-95e0", "waba-marketing"),
}


@dataclass
class Deployment:
    redis: RedisServer
    sandbox: Sandbox
    worker: Worker
    env: dict[str, str]
    senders_file: Path


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    workdir = tmpdir("wa-senders-")
    redis_server = RedisServer(workdir).start()
    sandbox = Sandbox(workdir).start()  # accepts any token: the test checks which one came
    (workdir / "marketing.token").write_text("tok-marketing-95e0\n")
    senders_file = workdir / "senders.toml"
    senders_file.write_text(SENDERS.format(token_file=workdir / "marketing.token", api_url=sandbox.api_url))
    env = worker_env(redis_server.url, sandbox.api_url, DISPATCH_SENDERS=str(senders_file))
    worker = Worker(workdir, {**env, "SUPPORT_TOKEN": "tok-support-7c1d"}, redis_server.url).start()
    yield Deployment(redis_server, sandbox, worker, env, senders_file)
    worker.stop()
    sandbox.stop()
    redis_server.stop()


def app_process(deployment: Deployment, script: str) -> dict:
    """Run `script` as an app does: the project's app, DISPATCH_SENDERS, and no token at all."""
    env = {k: v for k, v in deployment.env.items() if not k.startswith("INTERAKT_")}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_each_message_goes_out_through_its_own_sender(deployment: Deployment) -> None:
    deployment.sandbox.reset()
    sent = app_process(
        deployment,
        "import json\n"
        "from producers import send_text, mark_read\n"
        "out = {s: send_text('+919876500001', 'from ' + s, sender=None if s == 'default' else s)"
        ".get(timeout=30)['wamid'] for s in ('default', 'support', 'marketing')}\n"
        "out['read'] = mark_read('wamid.IN', sender='support').get(timeout=30)['success']\n"
        "print(json.dumps(out))\n",
    )
    requests = deployment.sandbox.requests()
    assert len(requests) == 4 and sent.pop("read") is True
    for sender, wamid in sent.items():
        [request] = [r for r in requests if r.get("wamid") == wamid]
        headers = request["headers"]
        assert (request["phone_number_id"], headers["x-access-token"], headers["x-waba-id"]) == EXPECTED[
            sender
        ]
        assert request["body"]["text"]["body"] == f"from {sender}"
    [read] = [r for r in requests if r["body"].get("status") == "read"]
    assert (read["phone_number_id"], read["headers"]["x-access-token"]) == EXPECTED["support"][:2]


def test_an_unknown_sender_is_refused_at_enqueue_naming_the_known_ones(deployment: Deployment) -> None:
    before = stored_keys(deployment.redis.client())
    refused = app_process(
        deployment,
        "import json\n"
        "from producers import send_text\n"
        "from worker.delivery.errors import InvalidIntent\n"
        "try:\n"
        "    send_text('+919876500001', 'x', sender='nope')\n"
        "except InvalidIntent as exc:\n"
        "    print(json.dumps(exc.errors))\n",
    )
    assert refused == [
        {"field": "sender", "reason": "unknown sender 'nope'; known senders: marketing, support"}
    ]
    assert stored_keys(deployment.redis.client()) == before  # nothing enqueued or stored


def test_an_unknown_sender_enqueued_by_name_fails_in_the_worker_with_nothing_sent(
    deployment: Deployment,
) -> None:
    deployment.sandbox.reset()
    client = Celery(broker=deployment.redis.url, backend=deployment.redis.url)
    intent = {"to": "+919876500001", "type": "text", "text": {"body": "x"}, "sender": "nope"}
    result = client.send_task("worker.tasks.send_message", kwargs=intent, queue="whatsapp")
    with pytest.raises(InvalidIntent) as caught:
        result.get(timeout=30)
    assert caught.value.errors[0]["field"] == "sender" and "unknown sender 'nope'" in str(caught.value)
    assert deployment.sandbox.requests() == []


def test_a_broken_senders_file_stops_the_worker_naming_file_sender_and_field(
    deployment: Deployment, tmp_path: Path
) -> None:
    broken = tmp_path / "senders.toml"
    broken.write_text('[senders.support]\nphone_number_id = "1"\nwaba_id = "w"\ntoken = "tok-in-the-file"\n')
    env = {**deployment.env, "DISPATCH_SENDERS": str(broken)}
    out = subprocess.run(
        [str(BIN / "celery"), "-A", "worker", "worker", "--pool", "threads"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert f"{broken}: sender 'support': token: a token is never written in this file" in out.stderr
    assert "tok-in-the-file" not in out.stdout + out.stderr


def test_senders_list_masks_tokens(deployment: Deployment) -> None:
    env = {**deployment.env, "SUPPORT_TOKEN": "tok-support-7c1d"}
    out = subprocess.run(
        [str(BIN / "wa-dispatch"), "senders", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = {row["sender"]: row for row in json.loads(out.stdout)}
    assert sorted(rows) == ["default", "marketing", "support"]
    assert rows["support"]["phone_number_id"] == "1111111111" and rows["support"]["token"] == "********"
    assert "tok-" not in out.stdout + out.stderr
    check = subprocess.run(
        [str(BIN / "wa-dispatch"), "senders", "check", str(deployment.senders_file), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and [r["sender"] for r in json.loads(check.stdout)] == [
        "support",
        "marketing",
    ]


def test_a_stale_template_on_another_sender_is_resynced_on_that_senders_account(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A 132000 on `support` marks support's copy stale; the worker's re-sync must read support's
    account (its WABA and token), so the new copy arrives and the stale mark clears."""
    env = {**deployment.env, "SUPPORT_TOKEN": "tok-support-7c1d"}

    def cli(*args: str, code: int = 0) -> Any:
        return wa_dispatch(env, *args, code=code)

    deployment.sandbox.reset()
    cli("templates", "sync", "--sender", "support")
    two = {"type": "BODY", "text": "Hi {{1}}, order {{2}} has shipped."}
    deployment.sandbox._call(
        "POST",
        "/_sandbox/templates",
        {
            "templates": [
                {"name": "order_update", "language": "en_US", "status": "APPROVED", "components": [two]}
            ]
        },
    )  # edited at Meta's after support's sync
    body = {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
    }
    intent = tmp_path / "intent.json"
    intent.write_text(
        json.dumps({"to": "+919876500203", "type": "template", "template": body, "sender": "support"})
    )
    assert cli("send", "-f", str(intent), code=1)["code"] == 132000

    def resynced() -> bool:
        listed = cli("templates", "list", "--sender", "support")["templates"]
        row = next(t for t in listed if t["name"] == "order_update")
        return (
            not row["stale"]
            and two in cli("templates", "show", "order_update", "--sender", "support")[0]["components"]
        )

    wait_for(resynced, 30, "the worker's re-sync of support's order_update", 0.5)
    listings = [r for r in deployment.sandbox.requests() if r.get("route") == "message_templates"]
    assert listings and {r["headers"]["x-access-token"] for r in listings} == {"tok-support-7c1d"}
    assert all(r["path"].endswith("/waba-support/message_templates") for r in listings)


def test_beats_template_sync_reads_every_account(deployment: Deployment) -> None:
    """Beat sends `sync_templates` with no arguments: each account's registry is synced with its
    own sender's token, not only `default`'s."""
    deployment.sandbox.reset()
    client = Celery(broker=deployment.redis.url, backend=deployment.redis.url)
    done = client.send_task("worker.tasks.sync_templates", queue="campaign").get(timeout=60)
    assert [row["sender"] for row in done["synced"]] == ["default", "marketing", "support"]
    listings = [r for r in deployment.sandbox.requests() if r.get("route") == "message_templates"]
    assert {(r["path"].split("/")[-2], r["headers"]["x-access-token"]) for r in listings} == {
        (WABA_ID, TOKEN),
        ("waba-marketing", "tok-marketing-95e0"),
        ("waba-support", "tok-support-7c1d"),
    }
