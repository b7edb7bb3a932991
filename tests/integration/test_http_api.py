"""The HTTP API end to end: a real web process (uvicorn) enqueues onto the session's Redis, the
session's worker sends to the sandbox, and the sandbox's status webhooks come back through the
same web process. Every route, every refusal, the same key twice, a batch with bad items, the
broker and Redis away, and schemathesis against the live /openapi.json.
"""

from __future__ import annotations

import http.client
import json
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.webhooks import post, status_body
from tests.harness import (
    BIN,
    PHONE_NUMBER_ID,
    ROOT,
    RedisServer,
    Sandbox,
    Web,
    free_port,
    tmpdir,
    wait_for,
    worker_env,
)
from tests.integration.conftest import Stack
from worker.delivery.errors import InvalidIntent
from worker.statuses.signature import HEADER, sign
from worker.web.auth import hash_key, key_entry
from worker.web.enqueue import IDEMPOTENCY_PREFIX, SENDER_PREFIX

pytestmark = pytest.mark.integration

KEY = "wad_shop-test-key-0f3a"
SUPPORT_ONLY = "wad_support-only-key-77c1"  # limited to the sender `support`, which is not `default`
FUZZ = "wad_schemathesis-key-a9d2"
BURST = "wad_burst-key-5e0b"  # only the rate test uses it, so its windows start empty
OTHER = "wad_other-app-key-3b9e"  # another app of the same deployment, every sender too
KEYS = ",".join(
    [
        key_entry("shop", KEY),
        key_entry("other", OTHER),
        key_entry("support", SUPPORT_ONLY, ["support"]),
        key_entry("fuzz", FUZZ),
        key_entry("burst", BURST),
    ]
)
SECRET = "api-test-webhook-secret"
RATE = 200  # requests per second per key: low enough that a test can pass it


def intent(to: str, body: str = "Your order has shipped") -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": body}}


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers by lowercase name) of one request."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(base + path, data=data, method=method, headers={**sent, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), {k.lower(): v for k, v in exc.headers.items()}


def raw_call(
    base: str, method: str, path: str, headers: list[tuple[str, str | bytes]], body: bytes = b""
) -> tuple[int, Any, list[tuple[str, str]]]:
    """One request with headers exactly as given (repeated names, raw bytes): what urllib cannot send."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_host=any(n.lower() == "host" for n, _ in headers))
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("content-type") or ""
        return (
            resp.status,
            json.loads(data) if ctype.startswith("application/json") else data,
            resp.getheaders(),
        )
    finally:
        conn.close()


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[Web]:
    env = worker_env(
        stack.redis.url,
        stack.sandbox.api_url,
        DISPATCH_API_KEYS=KEYS,
        DISPATCH_API_RATE_LIMIT=str(RATE),
        DISPATCH_WEBHOOK_SECRET=SECRET,
    )
    process = Web(tmpdir("wa-api-"), env, name="web-api").start()
    yield process
    process.stop()


@pytest.fixture
def sandbox(stack: Stack, web: Web) -> Sandbox:
    """The session's sandbox, emptied, posting its status webhooks to this web process."""
    stack.sandbox.reset()
    stack.sandbox.webhooks(web.webhook_url, SECRET, delays=[0.05, 0.1, 0.2])
    return stack.sandbox


def sent_to(sandbox: Sandbox, to: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.accepted() if (r["body"] or {}).get("to") == to]


def test_the_same_key_twice_is_one_send_and_its_status_comes_back(web: Web, sandbox: Sandbox) -> None:
    # A key of its own, so the test needs no empty Redis (each API key has its own namespace).
    key = f"api-order-{uuid.uuid4().hex[:8]}-shipped"
    to, headers = "+919876502001", {"Idempotency-Key": key}
    status, first, _ = call(web.base, "POST", "/v1/messages", intent(to), headers=headers)
    assert status == 202 and first["idempotency_key"] == key
    assert first["status_url"] == f"/v1/messages/{first['task_id']}"
    status, again, answer = call(web.base, "POST", "/v1/messages", intent(to), headers=headers)
    assert (status, again, answer.get("idempotent-replayed")) == (200, first, "true")
    status, other, _ = call(web.base, "POST", "/v1/messages", intent(to, "changed"), headers=headers)
    assert (status, other["reason"], other["task_id"]) == (409, "conflict", first["task_id"])

    def read() -> dict[str, Any]:
        shown = call(web.base, "GET", first["status_url"])[1]
        return shown if shown.get("delivery_status") == "read" else {}

    shown = wait_for(read, 30, "the status webhooks")
    [sent] = sent_to(sandbox, to)
    assert shown["state"] == "SUCCESS" and shown["wamid"] == sent["wamid"]
    assert shown["idempotency_key"] == key and shown["delivery_updated_at"] > time.time() - 60
    time.sleep(0.5)
    assert len(sent_to(sandbox, to)) == 1
    # The same JSON as `wa-dispatch status --json`.
    cli = subprocess.run(
        [str(BIN / "wa-dispatch"), "status", first["task_id"], "--json"],
        env=web.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(cli.stdout) == {**shown, "idempotency_key": f"shop:{key}"}  # as the deployment keeps it


def test_a_batch_enqueues_its_valid_intents_and_lists_the_bad_ones(web: Web, sandbox: Sandbox) -> None:
    good = [intent(f"+9198765021{i:02d}") for i in range(5)]
    messages = [*good[:2], {"to": "+91", "type": "text"}, 7, *good[2:], {**good[0], "sender": "support"}]
    headers = {"Idempotency-Key": "batch-7"}
    status, result, _ = call(web.base, "POST", "/v1/messages/batch", {"messages": messages}, headers=headers)
    assert status == 207 and (result["accepted"], result["refused"]) == (5, 3)
    outcomes = [item["outcome"] for item in result["items"]]
    assert outcomes == ["accepted"] * 2 + ["invalid"] * 2 + ["accepted"] * 3 + ["invalid"]
    assert [e["field"] for e in result["items"][2]["errors"]] == ["to"]
    assert result["items"][0]["idempotency_key"] == "batch-7:0" and "task_id" not in result["items"][2]
    wait_for(lambda: all(sent_to(sandbox, m["to"]) for m in good), 30, "the batch's sends")
    # The whole batch again under the same header: every item is its first task, nothing is sent twice.
    status, again, _ = call(web.base, "POST", "/v1/messages/batch", {"messages": messages}, headers=headers)
    assert status == 207 and [i["outcome"] for i in again["items"]][:2] == ["duplicate", "duplicate"]
    assert [i.get("task_id") for i in again["items"] if i["outcome"] == "duplicate"] == [
        i["task_id"] for i in result["items"] if i["outcome"] == "accepted"
    ]
    time.sleep(0.5)
    assert all(len(sent_to(sandbox, m["to"])) == 1 for m in good)
    all_good = {"messages": [intent("+919876502200")]}
    assert call(web.base, "POST", "/v1/messages/batch", all_good)[0] == 202
    too_many = {"messages": [intent("+919876502201")] * 1001}
    status, refused, _ = call(web.base, "POST", "/v1/messages/batch", too_many)
    assert (status, refused["reason"]) == (413, "too_large") and "1000" in refused["error"]


def test_read_receipts(web: Web, sandbox: Sandbox) -> None:
    status, accepted, _ = call(web.base, "POST", "/v1/read", {"message_id": "wamid.HBgMOTE5ODc2NTAyMzAw"})
    assert status == 202
    wait_for(
        lambda: any(
            (r["body"] or {}).get("message_id") == "wamid.HBgMOTE5ODc2NTAyMzAw" for r in sandbox.requests()
        ),
        30,
        "mark_read",
    )
    assert call(web.base, "GET", accepted["status_url"])[1]["task_id"] == accepted["task_id"]
    status, refused, _ = call(web.base, "POST", "/v1/read", {"message": "wamid.x"})
    assert status == 422 and {e["field"] for e in refused["errors"]} == {"message_id", "message"}
    assert call(web.base, "POST", "/v1/read", {"message_id": "w"}, key=SUPPORT_ONLY)[0] == 403


def test_every_refusal_is_json_and_enqueues_nothing(web: Web, sandbox: Sandbox) -> None:
    from worker.tasks import send_message

    url, body = "/v1/messages", intent("+919876502300")
    assert call(web.base, "POST", url, body, key=None)[:2] == (
        401,
        {"error": "missing or unknown API key (Authorization: Bearer)", "reason": "unauthorized"},
    )
    assert call(web.base, "POST", url, body, key="wad_not-a-key")[0] == 401
    assert call(web.base, "POST", url, body, key=hash_key(KEY))[0] == 401  # the stored hash is no key
    assert call(web.base, "GET", "/v1/messages/anything", key=None)[0] == 401
    status, forbidden, _ = call(web.base, "POST", url, body, key=SUPPORT_ONLY)
    assert (status, forbidden["reason"]) == (403, "forbidden")
    assert call(web.base, "POST", url, key=SUPPORT_ONLY, raw=b"{}")[0] == 403  # no sender: `default`
    huge = json.dumps({**body, "text": {"body": "x" * (1024 * 1024)}}).encode()
    assert call(web.base, "POST", url, raw=huge)[:2] == (
        413,
        {"error": "the body is over 1048576 bytes", "reason": "too_large"},
    )
    assert call(web.base, "POST", url, raw=b"to=1", headers={"Content-Type": "text/plain"})[0] == 415
    for raw in (b"{not json", b"[" * 100_000, b"", b"\xff\xfe"):
        assert call(web.base, "POST", url, raw=raw)[0] == 400, raw[:10]
    bad = {"to": "12", "type": "text", "text": {"body": ""}, "colour": "red"}
    status, invalid, _ = call(web.base, "POST", url, bad)
    with pytest.raises(InvalidIntent) as python_path:
        send_message.check(bad)
    assert (status, invalid["errors"]) == (422, python_path.value.errors)
    lone = "\ud800"  # a lone surrogate: valid JSON, not valid text
    for odd in (
        [],
        "x",
        None,
        {"to": ["+919876502300"]},
        {**body, "text": {"body": lone}},
        {**body, "idempotency_key": lone},
    ):
        assert call(web.base, "POST", url, raw=json.dumps(odd).encode())[0] == 422, odd
    time.sleep(0.5)
    assert sandbox.requests() == []
    assert KEY not in web.output() and SECRET not in web.output()


def test_a_key_past_its_rate_gets_429_with_retry_after(web: Web) -> None:
    answers: list[tuple[int, str | None]] = []
    plain = {"Content-Type": "text/plain"}  # counted, then refused (415) without touching the broker

    def burst() -> None:
        for _ in range(150):
            status, _, headers = call(web.base, "POST", "/v1/messages", raw=b"x", key=BURST, headers=plain)
            answers.append((status, headers.get("retry-after")))

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {s for s, _ in answers} == {415, 429}
    assert (429, "1") in answers and answers.count((415, None)) >= RATE
    time.sleep(1.1)
    assert call(web.base, "POST", "/v1/messages", raw=b"x", key=BURST, headers=plain)[0] == 415


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(web: Web, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{web.base}/openapi.json",
            "--header",
            f"Authorization: Bearer {FUZZ}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "15",
            "--max-time",
            "30",
            "--seed",
            "14",
            "--generation-database",
            "none",
            "--no-color",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    with urllib.request.urlopen(web.base + "/docs", timeout=10) as page:  # no key needed
        # Swagger UI over the document the routes come from (tests/integration/test_docs_page.py draws it)
        assert page.headers["content-type"].startswith("text/html") and b'"/openapi.json"' in page.read()


def test_the_broker_or_redis_away_is_503_with_nothing_enqueued(tmp_path: Path) -> None:
    state = RedisServer(tmp_path / "state", persistent=False)
    (tmp_path / "state").mkdir()
    state.start()
    (tmp_path / "broker").mkdir()
    broker = RedisServer(tmp_path / "broker", port=free_port())  # not started yet
    env = worker_env(
        state.url,
        "http://127.0.0.1:9/api/v17.0",
        CELERY_BROKER_URL=broker.url,
        DISPATCH_API_KEYS=KEYS,
        DISPATCH_PUBLISH_MAX_RETRIES="1",
    )
    web = Web(tmp_path, env).start()  # API keys and no webhook secret: it starts
    try:
        headers = {"Idempotency-Key": "while-down"}
        status, refused, _ = call(web.base, "POST", "/v1/messages", intent("+919876502400"), headers=headers)
        assert (status, refused["reason"]) == (503, "not_enqueued")
        batch = {"messages": [intent(f"+9198765024{i:02d}") for i in range(1, 4)]}
        status, result, _ = call(web.base, "POST", "/v1/messages/batch", batch)
        assert status == 503 and {i["outcome"] for i in result["items"]} == {"not_enqueued"}
        r = state.client()
        assert (
            r.hlen("wa:ledger") == 0 and r.keys(IDEMPOTENCY_PREFIX + "*") == r.keys(SENDER_PREFIX + "*") == []
        )
        broker.start()
        status, accepted, _ = call(web.base, "POST", "/v1/messages", intent("+919876502400"), headers=headers)
        assert status == 202 and r.hexists("wa:ledger", accepted["task_id"])
        assert call(web.base, "POST", "/v1/messages/batch", batch)[0] == 202
        assert broker.client().llen("whatsapp") == 4
        # Webhooks without a secret refuse every POST, as before.
        assert call(web.base, "POST", "/webhooks/whatsapp", {"entry": []}, key=None)[0] == 401
        broker.stop()
        state.stop()
        started = time.monotonic()
        assert call(web.base, "POST", "/v1/messages", intent("+919876502401"))[0] == 503
        assert call(web.base, "GET", f"/v1/messages/{accepted['task_id']}")[0] == 503
        assert time.monotonic() - started < 6
    finally:
        web.stop()
        broker.stop()
        state.stop()


def test_the_web_process_needs_webhook_secrets_or_api_keys(tmp_path: Path) -> None:
    env = worker_env("redis://127.0.0.1:9/0", "http://127.0.0.1:9/api/v17.0", PORT=str(free_port()))
    out = subprocess.run(
        [sys.executable, "-m", "worker.web"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "DISPATCH_API_KEYS" in out.stderr
    bad = {**env, "DISPATCH_API_KEYS": f"shop:{KEY}"}  # the key itself instead of its hash
    out = subprocess.run(
        [sys.executable, "-m", "worker.web"], env=bad, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "not the key itself" in out.stderr and KEY not in out.stderr


def _keys_like(r: Any, key: str) -> list[str]:
    """The API's idempotency records that hold `key`, in whatever namespace."""
    return list(r.scan_iter(f"{IDEMPOTENCY_PREFIX}*{key}*"))


def test_an_invalid_intent_is_refused_each_time_its_key_comes(
    web: Web, sandbox: Sandbox, stack: Stack
) -> None:
    bad = {"to": "+91", "type": "text", "text": {"body": "x"}}
    key = f"bad-{uuid.uuid4().hex[:8]}"
    twice = {"messages": [{**bad, "idempotency_key": key}] * 2}
    status, result, _ = call(web.base, "POST", "/v1/messages/batch", twice)
    assert (status, [i["outcome"] for i in result["items"]]) == (207, ["invalid", "invalid"])
    assert all("task_id" not in i and i["errors"][0]["field"] == "to" for i in result["items"])
    header = f"bad-{uuid.uuid4().hex[:8]}"
    answers: list[tuple[int, str]] = []

    def one() -> None:
        status, body, _ = call(web.base, "POST", "/v1/messages", bad, headers={"Idempotency-Key": header})
        answers.append((status, body.get("reason")))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [(422, "invalid")] * 20
    r = stack.redis.client()
    assert _keys_like(r, key) == [] and _keys_like(r, header) == []


def test_a_client_cannot_name_a_campaign(web: Web, sandbox: Sandbox) -> None:
    to, campaign = "+919876502500", {"name": "spring", "run_id": "r1"}
    status, refused, _ = call(web.base, "POST", "/v1/messages", {**intent(to), "campaign": campaign})
    assert (status, refused["reason"], [e["field"] for e in refused["errors"]]) == (
        422,
        "invalid",
        ["campaign"],
    )
    batch = {"messages": [{**intent(to), "campaign": campaign}, intent("+919876502501")]}
    status, result, _ = call(web.base, "POST", "/v1/messages/batch", batch)
    assert status == 207 and [i["outcome"] for i in result["items"]] == ["invalid", "accepted"]
    assert [e["field"] for e in result["items"][0]["errors"]] == ["campaign"]
    wait_for(lambda: sent_to(sandbox, "+919876502501"), 30, "the valid item's send")
    assert sent_to(sandbox, to) == []


def _done(web: Web, task: dict[str, Any], key: str) -> dict[str, Any]:
    shown = call(web.base, "GET", task["status_url"], key=key)[1]
    return shown if shown.get("state") == "SUCCESS" else {}


def test_idempotency_keys_are_each_api_keys_own(web: Web, sandbox: Sandbox) -> None:
    to, headers = "+919876502600", {"Idempotency-Key": f"order-{uuid.uuid4().hex[:8]}"}
    status, shop, _ = call(web.base, "POST", "/v1/messages", intent(to), headers=headers)
    assert status == 202
    # Another app's key with the same Idempotency-Key: a task of its own, sent; never shop's task.
    status, other, _ = call(web.base, "POST", "/v1/messages", intent(to), key=OTHER, headers=headers)
    assert status == 202 and other["task_id"] != shop["task_id"]
    assert other["idempotency_key"] == headers["Idempotency-Key"]
    status, changed, _ = call(
        web.base, "POST", "/v1/messages", intent(to, "other"), key=OTHER, headers=headers
    )
    assert (status, changed["task_id"]) == (409, other["task_id"])
    assert (
        call(web.base, "POST", "/v1/messages", intent(to), headers=headers)[1]["task_id"] == shop["task_id"]
    )
    wait_for(lambda: len(sent_to(sandbox, to)) == 2, 30, "both apps' sends")
    mine = wait_for(lambda: _done(web, shop, KEY), 30, "shop's task")
    theirs = wait_for(lambda: _done(web, other, OTHER), 30, "other's task")
    assert {mine["wamid"], theirs["wamid"]} == {r["wamid"] for r in sent_to(sandbox, to)}
    assert theirs["idempotency_key"] == mine["idempotency_key"] == headers["Idempotency-Key"]


def _signed_raw(raw: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", HEADER: sign(raw, SECRET.encode())}


def _sent(web: Web, api: Sandbox, to: str) -> tuple[dict[str, Any], str]:
    """A message enqueued over HTTP and sent by the session's worker: its answer and wamid."""
    status, accepted, _ = call(web.base, "POST", "/v1/messages", intent(to))
    assert status == 202
    shown = wait_for(lambda: _done(web, accepted, KEY), 30, "the send")
    return accepted, shown["wamid"]


def _inbox_added(r: Any) -> int:
    """How many entries the webhook inbox was ever given (workers delete those they applied)."""
    return int(r.xinfo_stream("wa:webhooks")["entries-added"]) if r.exists("wa:webhooks") else 0


def test_a_deeply_nested_webhook_body_is_400_and_kept_nowhere(web: Web, stack: Stack) -> None:
    r = stack.redis.client()
    # The sandbox may still be posting the statuses of earlier tests' sends to this web process.
    wait_for(lambda: stack.sandbox.webhook_log()["pending"] == 0, 30, "the sandbox's posts")
    before = _inbox_added(r)
    for raw in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        assert post(web.webhook_url, raw, _signed_raw(raw)) == 400, raw[:10]
    assert _inbox_added(r) == before


def test_a_non_finite_time_is_refused_and_no_stored_value_breaks_a_read(
    web: Web, api: Sandbox, stack: Stack
) -> None:
    to = "+919876502700"
    accepted, wamid = _sent(web, api, to)
    doc = json.dumps(status_body(PHONE_NUMBER_ID, wamid, "delivered", to))
    stamp = json.dumps(json.loads(doc)["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"])
    for number in ("NaN", "Infinity", "-Infinity", "1e400"):  # JSON numbers Python reads as non-finite
        raw = doc.replace(stamp, number).encode()
        assert post(web.webhook_url, raw, _signed_raw(raw)) == 400, number
    # Meta sends the time as a string: a non-finite one is taken as the time it was received.
    for text in ('"NaN"', '"1e400"'):
        raw = doc.replace(stamp, text).replace(
            '"delivered"', '"read"' if text == '"1e400"' else '"delivered"'
        )
        assert post(web.webhook_url, raw.encode(), _signed_raw(raw.encode())) == 200, text
    shown = wait_for(
        lambda: (
            (s := call(web.base, "GET", accepted["status_url"])[1]).get("delivery_status") == "read" and s
        ),
        30,
        "the read status",
    )
    assert math.isfinite(shown["delivery_updated_at"]) and shown["delivery_updated_at"] > time.time() - 60
    # Whatever is in Redis (a value written before this fix, or by hand), a read answers.
    r = stack.redis.client()
    for stored in (
        {"updated_at": "nan"},
        {"updated_at": "inf", "status": "failed", "error": '{"code": NaN, "message": Infinity}'},
        {"updated_at": "not a number", "status": "failed", "error": "{not json"},
    ):
        r.hset(f"wa:status:{wamid}", mapping=stored)
        status, shown, _ = call(web.base, "GET", accepted["status_url"])
        assert status == 200 and shown["delivery_updated_at"] is None, stored
        assert json.dumps(shown, allow_nan=False)
    r.delete(f"wa:status:{wamid}")  # written by hand: not for the fuzz tier's check of what workers store


def test_a_long_error_text_is_cut_where_it_is_kept_and_logged(web: Web, api: Sandbox, stack: Stack) -> None:
    to = "+919876502750"
    logged = {"worker": len(stack.worker.output()), "web": len(web.output())}  # the shared processes'
    accepted, wamid = _sent(web, api, to)
    error = {"code": 131026, "title": "t" * 5000, "message": "m" * 900_000, "details": "d" * 5000}
    raw = json.dumps(status_body(PHONE_NUMBER_ID, wamid, "failed", to, error=error)).encode()
    assert len(raw) < 1024 * 1024
    assert post(web.webhook_url, raw, _signed_raw(raw)) == 200
    shown = wait_for(
        lambda: (
            (s := call(web.base, "GET", accepted["status_url"])[1]).get("delivery_status") == "failed" and s
        ),
        30,
        "the failed status",
    )
    kept = shown["delivery_error"]
    assert kept["code"] == 131026 and kept["message"].startswith("mmm")
    assert all(len(kept[f]) <= 1000 for f in ("title", "message", "details"))  # events.ERROR_TEXT_MAX
    time.sleep(0.5)  # the worker's log line of the failure is written by now
    since = {"worker": stack.worker.output()[logged["worker"] :], "web": web.output()[logged["web"] :]}
    assert "mmm" in since["worker"]  # the failure was logged, cut
    assert max(len(line) for text in since.values() for line in text.splitlines()) < 20_000


def test_headers_are_utf8_and_authorization_comes_once(web: Web, sandbox: Sandbox) -> None:
    body = json.dumps(intent("+919876502800")).encode()
    auth = ("Authorization", f"Bearer {KEY}")
    base = [("Content-Type", "application/json"), auth]
    key = f"заказ-{uuid.uuid4().hex[:8]}"
    status, accepted, _ = raw_call(
        web.base, "POST", "/v1/messages", [*base, ("Idempotency-Key", key.encode())], body
    )
    assert (status, accepted["idempotency_key"]) == (202, key)
    status, again, _ = raw_call(
        web.base, "POST", "/v1/messages", [*base, ("Idempotency-Key", key.encode())], body
    )
    assert (status, again["task_id"]) == (200, accepted["task_id"])
    assert wait_for(lambda: _done(web, accepted, KEY), 30, "the send")["idempotency_key"] == key
    refused_body = json.dumps(intent("+919876502801")).encode()
    status, refused, _ = raw_call(
        web.base, "POST", "/v1/messages", [*base, ("Idempotency-Key", b"\xff\xfe-k")], refused_body
    )
    assert (status, [e["field"] for e in refused["errors"]]) == (422, ["Idempotency-Key"])
    for pair in ([auth, ("Authorization", "Bearer wad_nope")], [("Authorization", "Bearer wad_nope"), auth]):
        headers = [("Content-Type", "application/json"), *pair]
        status, refused, _ = raw_call(web.base, "POST", "/v1/messages", headers, refused_body)
        assert (status, refused["reason"]) == (401, "unauthorized")
        assert raw_call(web.base, "GET", accepted["status_url"], headers)[0] == 401
    time.sleep(0.5)
    assert sent_to(sandbox, "+919876502801") == []


def test_metrics_are_served_without_a_redirect_built_from_host(web: Web) -> None:
    for path in ("/metrics", "/metrics/"):
        status, page, headers = raw_call(web.base, "GET", path, [("Host", "evil.example")])
        assert status == 200 and b"wa_webhook_rejected_total" in page, path
        assert not any(name.lower() == "location" for name, _ in headers)


SENDERS = """
[senders.shop-a]
phone_number_id = "3333333333"
waba_id = "waba-a"
token_env = "SHOP_A_TOKEN"

[senders.shop-b]
phone_number_id = "4444444444"
waba_id = "waba-b"
token_env = "SHOP_B_TOKEN"
"""
A_KEY, B_KEY, OPS_KEY = "wad_shop-a-only-1c2d", "wad_shop-b-only-3e4f", "wad_operator-5a6b"


@dataclass
class Senders:
    """A deployment of two senders (DISPATCH_SENDERS) and no token anywhere: a private Redis no
    worker reads (tasks stay queued), and a web process with a key for each sender and one for all."""

    web: Web
    env: dict[str, str]

    def enqueue(self, key: str, sender: str, to: str) -> dict[str, Any]:
        status, accepted, _ = call(
            self.web.base, "POST", "/v1/messages", {**intent(to), "sender": sender}, key=key
        )
        assert status == 202, accepted
        return accepted

    def python(self, script: str) -> Any:
        """The last line `script` prints, as JSON: run as an app runs, with no token either."""
        out = subprocess.run(
            [sys.executable, "-c", script], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=90
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture
def senders(tmp_path: Path) -> Iterator[Senders]:
    (tmp_path / "state").mkdir()
    state = RedisServer(tmp_path / "state").start()
    (tmp_path / "senders.toml").write_text(SENDERS)
    keys = [key_entry("a", A_KEY, ["shop-a"]), key_entry("b", B_KEY, ["shop-b"]), key_entry("ops", OPS_KEY)]
    env = worker_env(
        state.url,
        "http://127.0.0.1:9/api/v17.0",
        DISPATCH_SENDERS=str(tmp_path / "senders.toml"),
        DISPATCH_API_KEYS=",".join(keys),
    )
    env = {k: v for k, v in env.items() if not k.startswith("INTERAKT_")}  # no token anywhere
    web = Web(tmp_path, env).start()
    try:
        yield Senders(web, env)
    finally:
        web.stop()
        state.stop()


def test_a_status_read_needs_redis_only(senders: Senders) -> None:
    accepted = senders.enqueue(OPS_KEY, "shop-a", "+919876502900")
    status, shown, _ = call(senders.web.base, "GET", accepted["status_url"], key=OPS_KEY)
    assert (status, shown["task_id"], shown["state"]) == (200, accepted["task_id"], "PENDING")
    python = senders.python(
        "import json\n"
        "from producers import delivery_status, send_text\n"
        "r = send_text('+919876502901', 'x', sender='shop-b')\n"
        f"print(json.dumps([delivery_status(r.id), delivery_status({accepted['task_id']!r})]))\n"
    )
    assert [s["state"] for s in python] == ["PENDING", "PENDING"] and python[1] == shown


def test_a_key_reads_only_its_own_senders_messages(senders: Senders) -> None:
    base = senders.web.base
    a_url = senders.enqueue(A_KEY, "shop-a", "+919876502910")["status_url"]
    b_url = senders.enqueue(B_KEY, "shop-b", "+919876502911")["status_url"]
    assert call(base, "GET", a_url, key=A_KEY)[0] == call(base, "GET", b_url, key=B_KEY)[0] == 200
    assert call(base, "GET", a_url, key=B_KEY)[:2] == (
        404,
        {"error": "no message with this task id for this API key", "reason": "not_found"},
    )
    assert call(base, "GET", b_url, key=A_KEY)[0] == 404
    assert call(base, "GET", a_url, key=OPS_KEY)[0] == call(base, "GET", b_url, key=OPS_KEY)[0] == 200
    # Enqueued from Python: the web process has no record of it, so the intent's own sender decides.
    task_id = senders.python(
        "import json\n"
        "from producers import send_text\n"
        "print(json.dumps(send_text('+919876502912', 'x', sender='shop-b').id))\n"
    )
    url = f"/v1/messages/{task_id}"
    assert (call(base, "GET", url, key=B_KEY)[0], call(base, "GET", url, key=A_KEY)[0]) == (200, 404)
    # An id nothing knows is read as `default`'s: the operator's key reads it (PENDING), a's does not.
    nothing = f"/v1/messages/{uuid.uuid4()}"
    assert (call(base, "GET", nothing, key=OPS_KEY)[0], call(base, "GET", nothing, key=A_KEY)[0]) == (
        200,
        404,
    )
