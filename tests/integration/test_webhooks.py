"""Webhooks end to end: the sandbox posts signed statuses to a real web process (uvicorn), which
stores them in Redis; real workers apply them and tell a second Celery app (the shop's).

Everything runs on its own Redis database and its own processes, because the workers here are
configured differently (DISPATCH_STATUS_TASK, DISPATCH_WINDOW_CHECK, DISPATCH_AUTO_READ): the
test process enqueues by task name, as an app that does not import this project does.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from celery import Celery

from devtools.webhooks import inbound_body, payment_body, post, signed, status_body
from tests import spec_examples as spec
from tests.harness import (
    BIN,
    PHONE_NUMBER_ID,
    TOKEN,
    RedisServer,
    Sandbox,
    Web,
    Worker,
    free_port,
    tmpdir,
    wait_for,
    worker_env,
)
from tests.integration.shop_app import MESSAGES, PAYMENTS, STATUSES
from tests.unit.test_inbound import EXPECTED, meta_examples
from worker.statuses.inbox import STREAM

pytestmark = pytest.mark.integration

SECRETS = "old-secret,new-secret"  # mid-rotation: both are accepted
VERIFY_TOKEN = "verify-me-7c1d"
# The sandbox stands in for Meta, whose own pace (seconds between sent, delivered and read) is
# not a wait of ours; a tenth of a second keeps the order while the test stays short.
DELAYS = [0.05, 0.15, 0.3]
TEMPLATE = {  # one of the sandbox's example templates, with the body parameter it expects
    "name": "order_update",
    "language": {"policy": "deterministic", "code": "en_US"},
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
}


@dataclass
class Hooks:
    url: str
    r: redis.Redis
    sandbox: Sandbox
    web: Web
    worker: Worker
    client: Celery
    metrics_port: int

    def send(self, to: str, **intent: Any) -> Any:
        intent = {"type": "template", "template": TEMPLATE, **intent}
        if intent["type"] != "template":
            del intent["template"]
        return self.client.send_task(
            "worker.tasks.send_message", kwargs={"to": to, **intent}, queue="whatsapp"
        )

    def status(self, wamid: str) -> dict[str, str]:
        return self.r.hgetall(f"wa:status:{wamid}")

    def cli(self, *args: str) -> tuple[int, dict[str, Any]]:
        env = {**os.environ, "REDIS_URL": self.url, "INTERAKT_PHONE_NUMBER_ID": PHONE_NUMBER_ID}
        out = subprocess.run(
            [str(BIN / "wa-dispatch"), *args, "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        return out.returncode, json.loads(out.stdout)


@pytest.fixture(scope="module")
def hooks(redis_server: RedisServer) -> Iterator[Hooks]:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    workdir = tmpdir("wa-hooks-")
    sandbox = Sandbox(workdir, token=TOKEN).start()
    env = worker_env(
        url,
        sandbox.api_url,
        DISPATCH_WEBHOOK_SECRET=SECRETS,
        DISPATCH_WEBHOOK_VERIFY_TOKEN=VERIFY_TOKEN,
        DISPATCH_STATUS_TASK="shop.on_status",
        DISPATCH_INBOUND_TASK="shop.on_message",
        DISPATCH_PAYMENT_TASK="shop.on_payment",
        DISPATCH_AUTO_READ="true",
        DISPATCH_WINDOW_CHECK="true",
    )
    metrics_port = free_port()
    web = Web(workdir, env).start()
    worker = Worker(workdir, {**env, "DISPATCH_METRICS_PORT": str(metrics_port)}, url).start()
    shop = Worker(
        workdir, {**env, "REDIS_URL": url}, url, name="shop", app="tests.integration.shop_app"
    ).start()
    client = Celery(broker=url, backend=url)
    yield Hooks(url, r, sandbox, web, worker, client, metrics_port)
    client.close()
    for process in (shop, worker, web, sandbox):
        process.stop()


@pytest.fixture
def h(hooks: Hooks) -> Hooks:
    hooks.sandbox.reset()
    hooks.sandbox.webhooks(hooks.web.webhook_url, "new-secret", delays=DELAYS)
    return hooks


def call(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, str]:
    req = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


def test_meta_handshake(h: Hooks) -> None:
    url = h.web.webhook_url + "?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token="
    status, body, ctype = call(url + VERIFY_TOKEN)
    assert (status, body) == (200, b"1158201444") and ctype.startswith("text/plain")
    assert call(url + "wrong")[0] == 403
    assert call(url.replace("subscribe", "unsubscribe") + VERIFY_TOKEN)[0] == 403
    assert call(h.web.base + "/healthz")[0] == 200


def test_bad_input_is_refused_and_nothing_is_stored(h: Hooks) -> None:
    before = h.r.xlen(STREAM) if h.r.exists(STREAM) else 0
    raw, headers = signed(status_body(PHONE_NUMBER_ID, "wamid.BAD", "read", "+919999595313"), "new-secret")
    unsigned = {"Content-Type": "application/json"}
    assert post(h.web.webhook_url, raw, unsigned) == 401
    assert post(h.web.webhook_url, raw, signed(json.loads(raw), "not-ours")[1]) == 401
    assert post(h.web.webhook_url, raw + b" ", headers) == 401  # signed, then changed
    not_json = b"{not json"
    assert post(h.web.webhook_url, not_json, {**unsigned, **_sig(not_json)}) == 400
    huge = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert post(h.web.webhook_url, huge, {**unsigned, **_sig(huge)}) == 413
    unknown = b'{"object": "page", "entry": []}'
    assert post(h.web.webhook_url, unknown, {**unsigned, **_sig(unknown)}) == 200  # never a retry storm
    time.sleep(0.5)
    assert (h.r.xlen(STREAM) if h.r.exists(STREAM) else 0) == before
    assert not h.status("wamid.BAD")
    metrics = call(h.web.base + "/metrics")[1].decode()
    for reason, least in (("signature", 3), ("malformed", 1), ("too_large", 1), ("unknown_shape", 1)):
        assert _sample(metrics, f'wa_webhook_rejected_total{{reason="{reason}"}}') >= least, reason
    assert "new-secret" not in h.web.output() and "old-secret" not in h.web.output()


def _sig(raw: bytes, secret: str = "old-secret") -> dict[str, str]:
    from worker.statuses.signature import HEADER, sign

    return {HEADER: sign(raw, secret.encode())}


def _sample(page: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(name))


def _final(h: Hooks, wamids: list[str], status: str) -> None:
    wait_for(lambda: all(h.status(w).get("status") == status for w in wamids), 20, f"all {status}")


def test_statuses_arrive_and_the_shop_hears_each_change(h: Hooks) -> None:
    h.r.delete(STATUSES)
    numbers = [f"+9198765011{i:02d}" for i in range(5)]
    results = [h.send(to) for to in numbers]
    wamids = [res.get(timeout=30)["wamid"] for res in results]
    _final(h, wamids, "read")
    code, shown = h.cli("status", results[0].id)
    assert code == 0 and shown["delivery_status"] == "read" and shown["wamid"] == wamids[0]
    assert shown["delivery_updated_at"] > time.time() - 60
    code, by_wamid = h.cli("status", "--wamid", wamids[1])
    assert code == 0 and by_wamid["task_id"] == results[1].id and by_wamid["delivery_status"] == "read"
    # The shop's own worker got sent, delivered and read for each message, tied to its task.
    wait_for(lambda: h.r.llen(STATUSES) >= 15, 20, "the shop's status tasks")
    seen = [json.loads(s) for s in h.r.lrange(STATUSES, 0, -1)]
    for wamid, res in zip(wamids, results, strict=True):
        mine = [s for s in seen if s["wamid"] == wamid]
        assert [s["status"] for s in mine] == ["sent", "delivered", "read"]
        assert {s["task_id"] for s in mine} == {res.id} and mine[2]["previous_status"] == "delivered"


def test_replays_and_reordering_never_move_a_message_backwards(h: Hooks) -> None:
    h.r.delete(STATUSES)
    h.sandbox.webhooks(h.web.webhook_url, "old-secret", delays=DELAYS, duplicate=True, reorder=True)
    results = [h.send(f"+9198765012{i:02d}") for i in range(5)]
    wamids = [res.get(timeout=30)["wamid"] for res in results]
    wait_for(lambda: h.sandbox.webhook_log()["pending"] == 0, 20, "every webhook posted")
    posts = h.sandbox.webhook_log()["posts"]
    assert len([p for p in posts if p["status"] == 200]) == 30  # 5 messages x 3 statuses x 2 copies
    _final(h, wamids, "read")
    time.sleep(1)  # the late `sent` copies are applied by now, and must have changed nothing
    assert all(h.status(w)["status"] == "read" for w in wamids)
    seen = [json.loads(s) for s in h.r.lrange(STATUSES, 0, -1)]
    assert sorted(s["wamid"] for s in seen) == sorted(wamids)  # one change each: read came first


def test_a_failure_by_webhook_is_a_failure_like_any_other(h: Hooks) -> None:
    to = "+919876501300"
    fail = {"to": to, "code": 131026, "title": "Message undeliverable", "message": "Undeliverable"}
    h.sandbox.webhooks(h.web.webhook_url, "new-secret", delays=DELAYS, fail=[fail])
    res = h.send(to, idempotency_key="undeliverable-1")
    wamid = res.get(timeout=30)["wamid"]
    _final(h, [wamid], "failed")
    code, shown = h.cli("status", res.id)
    assert code == 1 and shown["delivery_status"] == "failed"
    assert (
        shown["delivery_error"]["code"] == 131026
        and shown["delivery_error"]["title"] == "Message undeliverable"
    )
    code, dead = h.cli("failed", "list", "--code", "131026")
    entry = next(d for d in dead if d["idempotency_key"] == "undeliverable-1")
    assert entry["kind"] == "undelivered" and entry["intent"]["to"] == to
    metrics = call(f"http://127.0.0.1:{h.metrics_port}/metrics")[1].decode()
    assert _sample(metrics, 'wa_messages_failed_total{code="131026",kind="undelivered"') >= 1
    assert _sample(metrics, 'wa_webhook_events_applied_total{event="status",outcome="changed"}') >= 2


def test_inbound_messages_open_the_window_and_are_marked_read(h: Hooks) -> None:
    h.r.delete(MESSAGES)
    customer = "+919876501400"
    closed = h.send(customer, type="text", text={"body": "Hello?"})
    with pytest.raises(Exception, match="131047"):
        closed.get(timeout=30)
    assert not [r for r in h.sandbox.requests() if (r["body"] or {}).get("to") == customer]  # nothing sent
    wamid = h.sandbox.inbound(customer, "Where is my order?", PHONE_NUMBER_ID)
    wait_for(lambda: h.r.llen(MESSAGES) >= 1, 20, "the shop's inbound task")
    got = json.loads(h.r.lindex(MESSAGES, 0))
    assert (got["wamid"], got["wa_id"], got["message"]["text"]["body"]) == (
        wamid,
        customer[1:],
        "Where is my order?",
    )
    wait_for(
        lambda: any((r["body"] or {}).get("message_id") == wamid for r in h.sandbox.requests()),
        20,
        "mark_read",
    )
    assert h.send(customer, type="text", text={"body": "On its way"}).get(timeout=30)["wamid"]
    # The same inbound message again changes nothing: no second task, no second read receipt.
    raw, headers = signed(inbound_body(PHONE_NUMBER_ID, wamid, customer, "Where is my order?"), "new-secret")
    assert post(h.web.webhook_url, raw, headers) == 200
    time.sleep(1)
    assert h.r.llen(MESSAGES) == 1
    assert len([r for r in h.sandbox.requests() if (r["body"] or {}).get("message_id") == wamid]) == 1


def test_every_inbound_kind_of_meta_reaches_the_apps_task_typed(h: Hooks) -> None:
    """Each inbound example of Meta's webhook description, signed as Meta signs, through the web
    process and a worker to the shop's task: one call each, its content typed as its kind."""
    h.r.delete(MESSAGES)
    sent = {}
    for i, (name, (kind, field)) in enumerate(EXPECTED.items()):
        body = copy.deepcopy(meta_examples()[name])
        value = body["entry"][0]["changes"][0]["value"]
        value["metadata"]["phone_number_id"] = PHONE_NUMBER_ID
        (message,) = value["messages"]
        message["id"] = f"wamid.kind-{i}-{uuid.uuid4().hex[:8]}"
        message["timestamp"] = str(int(time.time()))
        sent[message["id"]] = (kind, field)
        assert post(h.web.webhook_url, *signed(body, "new-secret")) == 200, name
    wait_for(lambda: h.r.llen(MESSAGES) >= len(sent), 30, "the shop's inbound tasks")
    got = {m["wamid"]: m for m in map(json.loads, h.r.lrange(MESSAGES, 0, -1))}
    assert set(got) == set(sent)
    for wamid, (kind, field) in sent.items():
        assert got[wamid]["content"]["kind"] == kind, got[wamid]
        assert got[wamid]["content"][field] not in (None, [], ""), got[wamid]


def test_a_payment_for_an_order_reaches_the_app_tied_to_its_order_once(h: Hooks) -> None:
    """Meta's payments webhook (India) for an order_details message the worker sent: the app's
    payment task gets it once, with the order's reference_id and the intent it came from."""
    h.r.delete(PAYMENTS)
    customer = "+919876501500"
    h.sandbox.inbound(customer, "I'd like to order", PHONE_NUMBER_ID)  # the window is open
    time.sleep(1)
    order = h.send(
        customer, type="interactive", interactive=spec.ORDER_DETAILS, idempotency_key="order-42-pay"
    ).get(timeout=30)
    reference = spec.ORDER_DETAILS["action"]["parameters"]["reference_id"]
    for status in ("pending", "captured", "captured"):  # the last a replay: told once
        body = payment_body(PHONE_NUMBER_ID, order["wamid"], customer, reference, status=status)
        assert post(h.web.webhook_url, *signed(body, "new-secret")) == 200
    wait_for(lambda: h.r.llen(PAYMENTS) >= 2, 20, "the shop's payment tasks")
    time.sleep(1)
    told = [json.loads(p) for p in h.r.lrange(PAYMENTS, 0, -1)]
    assert [p["status"] for p in told] == ["pending", "captured"]
    captured = told[1]
    assert (captured["reference_id"], captured["wamid"], captured["idempotency_key"]) == (
        reference,
        order["wamid"],
        "order-42-pay",
    )
    assert captured["transaction"]["status"] == "success" and captured["amount"] == {
        "value": 50500,
        "offset": 100,
    }
    assert captured["event_id"] != told[0]["event_id"]


def test_redis_down_answers_503_fast_then_accepts_once_it_is_back(tmp_path) -> None:
    server = RedisServer(tmp_path, persistent=True).start()
    env = worker_env(server.url, "http://127.0.0.1:9/api/v17.0", DISPATCH_WEBHOOK_SECRET=SECRETS)
    web = Web(tmp_path, env).start()
    try:
        raw, headers = signed(
            status_body(PHONE_NUMBER_ID, "wamid.LATER", "delivered", "+919999595313"), "new-secret"
        )
        server.stop()
        started = time.monotonic()
        assert post(web.webhook_url, raw, headers) == 503
        assert time.monotonic() - started < 3
        assert call(web.base + "/healthz")[0] == 503
        server.start()
        assert post(web.webhook_url, raw, headers) == 200
        assert server.client().xlen(STREAM) == 1
    finally:
        web.stop()
        server.stop()
