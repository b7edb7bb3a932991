"""Opt-outs and cost end to end, with real processes: a private Redis database, the sandbox as
Meta (it posts signed inbound messages, `user_preferences` and statuses with `pricing`), the web
process, a Celery worker, and `wa-dispatch` as an operator runs it.

Three customers opt out three ways (they write STOP; Meta's `user_preferences` says `stop`; a
marketing template to them fails with 131050); the next campaign skips each of them, saying why,
and a marketing template to them fails unsent, while a utility template still reaches them. The
campaign's statuses repeat their pricing three times; its billable messages are counted once.
"""

from __future__ import annotations

import json
import urllib.request
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
    free_port,
    tmpdir,
    wa_dispatch,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.integration

SECRET = "optouts-webhook-secret"
DELAYS = [0.05, 0.1, 0.15]  # the sandbox's sent, delivered, read: Meta's pace is not ours to wait
STOPPED = "+919876500801"  # writes STOP
PREFERS = "+919876500802"  # stops marketing messages in WhatsApp's menu (user_preferences)
REFUSED = "+919876500803"  # Meta answers 131050 for them
STAYS = "+919876500804"  # never opts out
MARKETING = {
    "name": "welcome_named",
    "language": {"code": "en_US"},
    "components": [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Asha"},
                {"type": "text", "parameter_name": "city", "text": "Pune"},
            ],
        }
    ],
}
UTILITY = {
    "name": "order_update",
    "language": {"code": "en_US"},
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
}


@dataclass
class Rig:
    env: dict[str, str]
    r: redis.Redis
    sandbox: Sandbox
    web: Web
    metrics_port: int
    workdir: Path

    def cli(self, *args: str, code: int = 0) -> Any:
        return wa_dispatch(self.env, *args, code=code)

    def send(self, to: str, template: dict[str, Any], key: str, code: int = 0) -> Any:
        path = self.workdir / f"{key}.json"
        path.write_text(
            json.dumps({"to": to, "type": "template", "template": template, "idempotency_key": key})
        )
        return self.cli("send", "-f", str(path), code=code)

    def opted(self) -> dict[str, dict[str, Any]]:
        return {row["number"]: row for row in self.cli("optout", "list")}

    def to_since(self, before: int) -> list[str]:
        return [m["body"]["to"] for m in self.sandbox.accepted()[before:]]

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and all(w in line for w in wanted)
        )


@pytest.fixture(scope="module")
def rig(redis_server: RedisServer) -> Iterator[Rig]:
    url = redis_server.url.rsplit("/", 1)[0] + "/9"
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    workdir = tmpdir("wa-optouts-")
    sandbox = Sandbox(workdir, token=TOKEN).start()
    env = worker_env(url, sandbox.api_url, DISPATCH_WEBHOOK_SECRET=SECRET)
    metrics_port = free_port()
    web = Web(workdir, env).start()
    worker = Worker(workdir, {**env, "DISPATCH_METRICS_PORT": str(metrics_port)}, url).start()
    sandbox.webhooks(web.webhook_url, SECRET, delays=DELAYS)
    try:
        yield Rig(env, r, sandbox, web, metrics_port, workdir)
    finally:
        for process in (worker, web, sandbox):
            process.stop()


def campaign(rig: Rig, name: str, *numbers: str) -> Path:
    path = rig.workdir / f"{name}.toml"
    params = ", ".join(
        f'{{ type = "text", parameter_name = "{p["parameter_name"]}", text = "{p["text"]}" }}'
        for p in MARKETING["components"][0]["parameters"]
    )
    path.write_text(
        f'name = "{name}"\n[schedule]\nevery = 86400\n'
        f"[audience]\nnumbers = {json.dumps(list(numbers))}\n"
        '[message]\ntype = "template"\n'
        '[message.template]\nname = "welcome_named"\nlanguage = { code = "en_US" }\n'
        f'components = [{{ type = "body", parameters = [{params}] }}]\n'
    )
    return path


def test_stop_user_preferences_and_131050_each_keep_the_next_campaign_but_not_a_utility_template(
    rig: Rig,
) -> None:
    rig.cli("templates", "sync")  # the registry knows welcome_named is MARKETING, order_update UTILITY

    # Three opt-outs, three ways.
    rig.sandbox.inbound(STOPPED.lstrip("+"), "  Stop. ", PHONE_NUMBER_ID)
    rig.sandbox.preference(PREFERS.lstrip("+"), "stop", PHONE_NUMBER_ID)
    rig.sandbox.webhooks(
        rig.web.webhook_url,
        SECRET,
        delays=DELAYS,
        fail=[{"to": REFUSED, "code": 131050, "title": "User has stopped marketing messages"}],
    )
    rig.send(REFUSED, MARKETING, "promo-803")  # accepted, then failed by a status webhook
    wait_for(lambda: len(rig.opted()) == 3, 30, "three opt-outs recorded")
    rig.sandbox.webhooks(rig.web.webhook_url, SECRET, delays=DELAYS)
    opted = rig.opted()
    assert {n: row["reason"] for n, row in opted.items()} == {
        STOPPED: "keyword",
        PREFERS: "user_preferences",
        REFUSED: "meta_131050",
    }
    assert all(row["at"] > 1.7e9 for row in opted.values())
    assert opted[STOPPED]["detail"] == "Stop."
    assert opted[PREFERS]["detail"] == "User requested to stop marketing messages"

    # The next campaign skips the three, saying why; only the fourth customer is sent it.
    before = len(rig.sandbox.accepted())
    run = rig.cli(
        "campaign", "run", str(campaign(rig, "spring", STOPPED, PREFERS, REFUSED, STAYS)), "--run-id", "r1"
    )
    assert (run["sent"], run["skipped"], run["failed"]) == (1, 3, 0)
    assert rig.to_since(before) == [STAYS]
    report = {row["to"]: row for row in rig.cli("campaign", "report", "spring", "r1")["recipients"]}
    for number, reason in ((STOPPED, "keyword"), (PREFERS, "user_preferences"), (REFUSED, "meta_131050")):
        assert report[number]["status"] == "skipped"
        assert report[number]["reason"].startswith(f"opted out of marketing messages ({reason}")

    # A marketing template one by one fails unsent, with the reason; a utility template still goes.
    before = len(rig.sandbox.accepted())
    refused = rig.send(STOPPED, MARKETING, "promo-801", code=1)
    assert (refused["kind"], refused["reason"]) == ("opted_out", "keyword")
    assert refused["opted_out_at"] == opted[STOPPED]["at"]
    assert "marketing template not sent" in refused["error"]
    for n, number in enumerate((STOPPED, PREFERS, REFUSED)):
        assert rig.send(number, UTILITY, f"order-{n}")["wamid"]
    assert rig.to_since(before) == [STOPPED, PREFERS, REFUSED]

    # START opts back in: the next campaign reaches them again.
    rig.sandbox.inbound(STOPPED.lstrip("+"), "START", PHONE_NUMBER_ID)
    wait_for(lambda: STOPPED not in rig.opted(), 30, "the opt-in")
    before = len(rig.sandbox.accepted())
    run = rig.cli("campaign", "run", str(campaign(rig, "summer", STOPPED, PREFERS)), "--run-id", "r1")
    assert (run["sent"], run["skipped"]) == (1, 1)
    assert rig.to_since(before) == [STOPPED]


def test_a_campaigns_billable_messages_are_counted_once_by_category(rig: Rig) -> None:
    numbers = [f"+9198765009{i:02d}" for i in range(3)]
    marketing_before = rig.metric("wa_messages_priced_total", category="marketing", billable="true")
    run = rig.cli("campaign", "run", str(campaign(rig, "autumn", *numbers)), "--run-id", "r1")
    assert run["sent"] == 3

    def read() -> bool:
        rows = rig.cli("campaign", "report", "autumn", "r1")["recipients"]
        return all(row["delivery_status"] == "read" for row in rows)

    wait_for(read, 30, "every status of the run")  # sent, delivered and read: pricing three times
    status = rig.cli("campaign", "status", "autumn", "r1")
    assert (status["billable"], status["free"]) == ({"marketing": 3}, {})
    rows = rig.cli("campaign", "report", "autumn", "r1")["recipients"]
    assert {(row["pricing_category"], row["billable"]) for row in rows} == {("marketing", True)}
    assert (
        rig.metric("wa_messages_priced_total", category="marketing", billable="true") == marketing_before + 3
    )

    # A utility template is billed as utility; a reply inside the window (a text) is free service.
    utility_before = rig.metric("wa_messages_priced_total", category="utility", billable="true")
    service_before = rig.metric("wa_messages_priced_total", category="service", billable="false")
    rig.send(numbers[0], UTILITY, "order-900")
    text = rig.workdir / "reply.json"
    text.write_text(json.dumps({"to": numbers[0], "type": "text", "text": {"body": "Thanks!"}}))
    rig.cli("send", "-f", str(text))
    wait_for(
        lambda: (
            rig.metric("wa_messages_priced_total", category="service", billable="false") == service_before + 1
        ),
        30,
        "the reply's pricing",
    )
    wait_for(
        lambda: (
            rig.metric("wa_messages_priced_total", category="utility", billable="true") == utility_before + 1
        ),
        30,
        "the utility template's pricing",
    )
