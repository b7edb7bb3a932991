"""A customer's data erased on request, end to end: one number is sent a text over the HTTP API, a
template and an image from the command line, a message the API fails (a dead letter), a campaign;
it writes in (an inbound webhook), its statuses come back signed, it opts out. `wa-dispatch forget`
then leaves nothing of it in any Redis key or value (all types, kombu's message bodies decoded),
and what must remain still works: the opt-out holds, the same idempotency key is not sent again.
Before that, every key holding the number has an expiry, but the records that must outlive it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.harness import (
    PHONE_NUMBER_ID,
    TOKEN,
    RedisServer,
    Sandbox,
    Web,
    Worker,
    api_call,
    tmpdir,
    wa_dispatch,
    wait_for,
    worker_env,
)
from worker.ops.erasure import Eraser, forms
from worker.web.auth import key_entry, new_key

pytestmark = pytest.mark.integration

NUMBER = "+919876500777"
OTHER = "+919876500778"
SECRET = "erasure-webhook-secret"
API_KEY = new_key()
PRIVACY_KEY = new_key()  # the one key named in DISPATCH_ERASURE_KEYS
# The sandbox stands in for Meta, whose pace between statuses is not a wait of ours.
DELAYS = [0.05, 0.1, 0.15]
# Kept past the number's messages, by design (docs/operations.md, "Erasure and retention"): the
# opt-out is the customer's own request, and a campaign's definition is the operator's file.
NO_EXPIRY = ("wa:optout", "wa:campaign:def:")


@dataclass
class Rig:
    env: dict[str, str]
    r: redis.Redis
    sandbox: Sandbox
    web: Web
    workdir: Path

    def cli(self, *args: str, code: int = 0) -> Any:
        return wa_dispatch(self.env, *args, code=code)

    def api(
        self, method: str, path: str, body: Any = None, key: str = "", api_key: str = API_KEY
    ) -> tuple[int, Any]:
        headers = {"Idempotency-Key": key} if key else None
        return api_call(self.web.base, method, path, api_key, body, headers)


@pytest.fixture(scope="module")
def rig(redis_server: RedisServer) -> Iterator[Rig]:
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    workdir = tmpdir("wa-erasure-")
    sandbox = Sandbox(workdir, token=TOKEN).start()
    env = worker_env(
        url,
        sandbox.api_url,
        DISPATCH_WEBHOOK_SECRET=SECRET,
        DISPATCH_API_KEYS=f"{key_entry('shop', API_KEY)},{key_entry('privacy', PRIVACY_KEY)}",
        DISPATCH_ERASURE_KEYS="privacy",
        DISPATCH_MEDIA_ALLOW_HOSTS="127.0.0.1",
    )
    web = Web(workdir, env).start()
    worker = Worker(workdir, env, url).start()
    sandbox.webhooks(web.webhook_url, SECRET, delays=DELAYS)
    try:
        yield Rig(env, r, sandbox, web, workdir)
    finally:
        for process in (worker, web, sandbox):
            process.stop()


def holding(r: redis.Redis, number: str = NUMBER) -> list[str]:
    return Eraser([r]).still_held(number)


def test_forget_leaves_nothing_of_the_number_and_keeps_what_must_remain(rig: Rig, tmp_path: Path) -> None:
    text = {"to": NUMBER, "type": "text", "text": {"body": "Your order 77 has shipped"}}
    status, accepted = rig.api("POST", "/v1/messages", text, key="order-77")
    assert status == 202
    template = {
        "to": NUMBER,
        "type": "template",
        "idempotency_key": "otp-77",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
        },
    }
    (tmp_path / "template.json").write_text(json.dumps(template))
    sent = rig.cli("send", "-f", str(tmp_path / "template.json"))
    rig.sandbox.faults({"code": 131026, "to": NUMBER, "times": 1})
    (tmp_path / "failing.json").write_text(json.dumps({**text, "idempotency_key": "fails-77"}))
    assert rig.cli("send", "-f", str(tmp_path / "failing.json"), code=1)["code"] == 131026  # a dead letter
    rig.sandbox.inbound(NUMBER.lstrip("+"), "please delete my data", PHONE_NUMBER_ID)
    campaign = tmp_path / "spring.toml"
    campaign.write_text(
        'name = "spring"\n[schedule]\nevery = 86400\n'
        f'[audience]\nnumbers = ["{NUMBER}", "{OTHER}"]\n'
        '[message]\ntype = "text"\ntext = { body = "Spring sale" }\n'
    )
    assert rig.cli("campaign", "run", str(campaign), "--run-id", "r1")["sent"] == 2
    rig.cli("optout", "add", NUMBER)
    wait_for(
        lambda: rig.api("GET", accepted["status_url"])[1].get("delivery_status") == "read", 30, "statuses"
    )
    wait_for(lambda: any(k.startswith("wa:window:") for k in rig.r.scan_iter()), 30, "the inbound webhook")
    assert sent["wamid"] and len(holding(rig.r)) >= 10  # the number is all over Redis

    # Retention: every key that holds the number expires, but the records kept by design.
    lasting = [k for k in holding(rig.r) if rig.r.ttl(k) == -1 and not k.startswith(NO_EXPIRY)]
    assert lasting == []

    forgot = rig.cli("forget", NUMBER)
    assert forgot["number"] == NUMBER and sum(forgot["removed"].values()) >= 10
    assert holding(rig.r) == []
    for key in rig.r.scan_iter():  # and, to the letter, no form of it anywhere
        dump = rig.r.dump(key) or b""
        assert not any(form.encode() in dump for form in forms(NUMBER)), key
    assert rig.cli("forget", NUMBER, "--check") == {"number": NUMBER, "still_held_by": []}

    # What must remain: the same idempotency keys are not sent again; the opt-out still holds.
    before = len(rig.sandbox.accepted())
    status, replay = rig.api("POST", "/v1/messages", text, key="order-77")
    assert (status, replay["task_id"]) == (200, accepted["task_id"])
    assert rig.cli("send", "-f", str(tmp_path / "template.json"))["wamid"] == sent["wamid"]
    summer = tmp_path / "summer.toml"  # the operator's list still has the number: the opt-out holds
    summer.write_text(campaign.read_text().replace("spring", "summer").replace("Spring", "Summer"))
    assert rig.cli("campaign", "run", str(summer), "--run-id", "s1")["sent"] == 1
    time.sleep(0.5)
    assert [m["body"]["to"] for m in rig.sandbox.accepted()[before:]] == [OTHER]


def test_a_customer_is_erased_over_http_by_a_key_allowed_to_and_by_no_other(rig: Rig) -> None:
    number = "+919876500779"
    text = {"to": number, "type": "text", "text": {"body": "Your order 79 has shipped"}}
    status, accepted = rig.api("POST", "/v1/messages", text, key="order-79")
    assert status == 202
    wait_for(
        lambda: rig.api("GET", accepted["status_url"])[1].get("delivery_status") == "read", 30, "statuses"
    )
    held = holding(rig.r, number)
    assert held  # the send, its result, its statuses

    status, refused = rig.api("DELETE", f"/v1/customers/{number}")  # shop's key: not an eraser
    assert (status, refused["reason"]) == (403, "forbidden") and "DISPATCH_ERASURE_KEYS" in refused["error"]
    assert holding(rig.r, number) == held
    status, refused = rig.api("DELETE", "/v1/customers/12345", api_key=PRIVACY_KEY)
    assert (status, refused["errors"][0]["field"]) == (422, "number")

    status, erased = rig.api("DELETE", f"/v1/customers/{number.replace('+', '%2B')}", api_key=PRIVACY_KEY)
    assert status == 200 and erased["number"] == number and erased["kept_as"].startswith("erased:")
    assert sum(erased["removed"].values()) >= len(held)
    assert holding(rig.r, number) == []
    # The idempotency key's record remains: the same request is still a replay, not a second send.
    before = len(rig.sandbox.accepted())
    status, replay = rig.api("POST", "/v1/messages", text, key="order-79")
    assert (status, replay["task_id"]) == (200, accepted["task_id"])
    time.sleep(0.5)
    assert len(rig.sandbox.accepted()) == before
