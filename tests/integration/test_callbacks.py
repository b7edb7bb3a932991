"""HTTP callbacks end to end, for an app that does not run Celery: it enqueues over the HTTP API
with its key, and the statuses of its messages and what its customers write come back as signed
POSTs to its callback URL (DISPATCH_CALLBACKS_FILE), through a real web process, a real worker and
the sandbox posting Meta's webhooks. The app's receiver fails, hangs past the timeout and is down
for half a minute: every event still arrives at least once, signed, each with the id the app
drops a repeat by; sending never waits for the receiver. Every callback setting is its default."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.harness import (
    PHONE_NUMBER_ID,
    TOKEN,
    RedisServer,
    Sandbox,
    Web,
    Worker,
    api_call,
    tmpdir,
    wait_for,
    worker_env,
)
from tests.integration.callback_receiver import receiver
from worker.web.auth import key_entry, new_key

pytestmark = pytest.mark.integration

KEY = new_key()
SECRET = "callback-secret-SECRET-9b3e"
WEBHOOK_SECRET = "callbacks-webhook-secret"
DELAYS = [0.05, 0.1, 0.15]  # the sandbox's pace between statuses: Meta's, not a wait of ours
DOWN_FOR = 30.0  # the receiver answers 503 for this long after the first sends
NUMBERS = ["+919876500801", "+919876500802", "+919876500803"]


def api(web: Web, path: str, body: Any) -> tuple[int, Any]:
    return api_call(web.base, "POST", path, KEY, body)


def test_every_event_reaches_an_app_whose_receiver_fails_hangs_and_is_down(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    workdir = tmpdir("wa-callbacks-")
    with receiver(SECRET.encode()) as app:
        callbacks = tmp_path / "callbacks.toml"
        callbacks.write_text(f"[callbacks.shop]\nurl = '{app.url}'\nsecret_env = 'SHOP_CALLBACK_SECRET'\n")
        env = worker_env(
            url,
            "",
            DISPATCH_API_KEYS=key_entry("shop", KEY),
            DISPATCH_CALLBACKS_FILE=str(callbacks),
            SHOP_CALLBACK_SECRET=SECRET,
            DISPATCH_CALLBACK_ALLOW_HOSTS="127.0.0.1",  # the receiver is on loopback
            DISPATCH_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
        sandbox = Sandbox(workdir, token=TOKEN).start()
        env["INTERAKT_API_URL"] = sandbox.api_url
        web = Web(workdir, env).start()
        worker = Worker(workdir, env, url).start()
        try:
            sandbox.webhooks(web.webhook_url, WEBHOOK_SECRET, delays=DELAYS)
            app.plan = [500, 502, 11.0]  # two errors, then a hang past DISPATCH_CALLBACK_TIMEOUT (10 s)
            app.down_until = time.time() + DOWN_FOR
            tasks = {}
            for number in NUMBERS:
                status, accepted = api(web, "/v1/messages", {"to": number, "text": {"body": "Shipped"}})
                assert status == 202
                tasks[accepted["task_id"]] = number
            wamid = sandbox.inbound(NUMBERS[0].lstrip("+"), "Where is it?", PHONE_NUMBER_ID)
            # Sending does not wait for the receiver: every message is sent while it is down.
            wait_for(lambda: len(sandbox.accepted()) >= len(NUMBERS), 20, "the sends")
            assert time.time() < app.down_until

            expected = len(NUMBERS) * 3 + 1  # sent, delivered, read for each; one inbound message
            wait_for(
                lambda: len(app.taken()) >= expected, DOWN_FOR + 120, "every event, once the receiver is back"
            )
        finally:
            for process in (worker, web, sandbox):
                process.stop()

    assert all(g["verified"] for g in app.got)  # every POST signed with the key's secret
    answers = Counter(str(g["answer"]) for g in app.got)
    assert answers["500"] == answers["502"] == answers["11.0"] == 1 and answers["503"] >= 1
    taken = app.taken()
    assert len(taken) == expected  # each event's id is stable across its retries: no repeat kept
    statuses = [e for e in taken.values() if e["type"] == "message.status"]
    by_task = Counter((e["data"]["task_id"], e["data"]["status"]) for e in statuses)
    assert by_task == Counter({(t, s): 1 for t in tasks for s in ("sent", "delivered", "read")})
    (inbound,) = [e for e in taken.values() if e["type"] == "message.inbound"]
    assert inbound["data"]["wamid"] == wamid and inbound["data"]["content"] == {
        "kind": "text",
        "body": "Where is it?",
    }
