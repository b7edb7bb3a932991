"""End to end: producer -> private redis-server -> real celery worker -> real HTTP to the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from celery.result import AsyncResult

import producers
from tests import spec_examples as spec
from tests.harness import PHONE_NUMBER_ID, TOKEN, WABA_ID, stored_keys
from worker.delivery.callback_data import with_tracker
from worker.delivery.errors import AmbiguousError, InvalidIntent, PermanentError, RetriesExhausted
from worker.tasks import mark_read, send_message

pytestmark = pytest.mark.integration
TIMEOUT = 30


def sent_bodies(api) -> list[dict]:
    return [r["body"] for r in api.requests()]


def failure(result: AsyncResult) -> Exception:
    with pytest.raises(Exception) as info:
        result.get(timeout=TIMEOUT)
    assert result.state == "FAILURE"
    return info.value


SPEC_BODIES = [spec.TEXT, spec.IMAGE_ID, spec.CATALOG, spec.PRODUCT, spec.PRODUCT_LIST, spec.REPLY]
SPEC_BODIES += [spec.message(t, c) for t, c in spec.OTHERS.items()] + [spec.message("interactive", spec.LIST)]


def test_every_message_type_reaches_the_api_exactly_as_the_spec_shows(stack, api) -> None:
    results = [send_message.delay(**spec.intent_of(body)) for body in SPEC_BODIES]
    outcomes = [r.get(timeout=TIMEOUT) for r in results]

    received = api.requests()
    assert len(received) == len(SPEC_BODIES)
    by_wamid = {r["wamid"]: r for r in received}
    for body, result, outcome in zip(SPEC_BODIES, results, outcomes, strict=True):
        assert outcome["wamid"].startswith("wamid.")
        assert outcome["wa_id"] == "919999595313" and outcome["to"] == spec.TO and outcome["attempts"] == 1
        request = by_wamid[outcome["wamid"]]
        # As the spec shows it, with the tracker naming its key (the task id)
        assert request["body"] == {**body, "biz_opaque_callback_data": with_tracker(result.id, None)}
        assert request["phone_number_id"] == PHONE_NUMBER_ID
        assert request["headers"]["x-access-token"] == TOKEN
        assert request["headers"]["x-waba-id"] == WABA_ID
        assert request["headers"]["content-type"] == "application/json"
        assert set(outcome) == {"wamid", "wa_id", "to", "type", "attempts", "idempotency_key", "duplicate"}
        assert outcome["type"] == body["type"] and outcome["idempotency_key"] == result.id
        assert outcome["duplicate"] is False
        kept = stack.redis.client().get(
            f"celery-task-meta-{result.id}"
        )  # as kept in the result backend: JSON
        assert json.loads(kept)["status"] == "SUCCESS" and json.loads(kept)["result"] == outcome
        assert TOKEN not in kept


def test_producer_helpers_build_the_same_intents(api) -> None:
    results = [
        producers.send_text(spec.TO, "This is a test"),
        producers.send_image(spec.TO, id="MEDIA-OBJECT-ID"),
        producers.send_text(spec.TO, "your-text-message-content", reply_to="wamid.PREVIOUS"),
        producers.send_catalog(spec.TO, spec.CATALOG["interactive"]["body"]["text"], "2lc20305pt"),
        producers.send_product(
            spec.TO, "CATALOG_ID", "ID_TEST_ITEM_1", body="optional body text", footer="optional footer text"
        ),
        producers.send_product_list(
            spec.TO,
            "CATALOG_ID",
            {"section-title": ["sku-1", "sku-2"], "section-title-2": ["sku-3", "sku-4"]},
            header="header-content",
            body="body-content",
            footer="footer-content",
        ),
    ]
    for r in results:
        r.get(timeout=TIMEOUT)
    sent = sent_bodies(api)
    assert all(b["biz_opaque_callback_data"].startswith("wd1:") for b in sent)  # each names its intent
    bodies = [{k: v for k, v in b.items() if k != "biz_opaque_callback_data"} for b in sent]
    for expected in [spec.TEXT, spec.IMAGE_ID, spec.REPLY, spec.CATALOG, spec.PRODUCT, spec.PRODUCT_LIST]:
        assert expected in bodies


def test_mark_read_posts_the_read_status(api) -> None:
    outcome = mark_read.delay(message_id="wamid.INCOMING").get(timeout=TIMEOUT)
    assert outcome["success"] is True and outcome["message_id"] == "wamid.INCOMING"
    assert sent_bodies(api) == [spec.READ]


def test_bad_intents_are_refused_at_enqueue_and_nothing_reaches_redis(stack, api) -> None:
    queue_before = stack.redis.client().llen("whatsapp")
    keys_before = stored_keys(stack.redis.client())
    with pytest.raises(InvalidIntent, match=r"text\.body: String should have at most 4096"):
        send_message.delay(to=spec.TO, type="text", text={"body": "x" * 5000})
    with pytest.raises(InvalidIntent, match=r"^invalid message intent: to: "):
        producers.send_text("12345", "hello")
    with pytest.raises(InvalidIntent, match=r"interactive\.button\.action\.buttons"):
        producers.send_buttons(spec.TO, "pick", {f"b{i}": f"B{i}" for i in range(4)})
    with pytest.raises(InvalidIntent, match="exactly one of 'id' or 'link'"):
        producers.send_image(spec.TO)
    with pytest.raises(TypeError, match="keyword arguments only"):
        send_message.delay(spec.TO, "text")
    assert stack.redis.client().llen("whatsapp") == queue_before
    assert stored_keys(stack.redis.client()) == keys_before
    assert api.requests() == []


def test_bad_intent_enqueued_by_name_fails_in_the_worker_without_http(stack, api) -> None:
    from worker import app

    result = app.send_task(
        "worker.tasks.send_message", kwargs={"to": "+919999595313", "type": "text", "text": {"body": ""}}
    )
    exc = failure(result)
    assert isinstance(exc, InvalidIntent)
    assert exc.errors == [{"field": "text.body", "reason": "String should have at least 1 character"}]
    assert api.requests() == []


def test_transient_errors_are_retried_then_succeed(api) -> None:
    api.faults({"status": 500, "times": 2})
    outcome = producers.send_text(spec.TO, "retry me").get(timeout=TIMEOUT)
    assert outcome["attempts"] == 3
    statuses = [r["status"] for r in api.requests()]
    assert statuses == [500, 500, 200]
    assert len(api.accepted()) == 1


def test_permanent_error_fails_after_one_attempt_with_the_api_code(api) -> None:
    api.faults(
        {
            "status": 400,
            "code": 131047,
            "message": "Re-engagement message",
            "details": "Message failed to send because more than 24 hours have passed",
        }
    )
    exc = failure(producers.send_text(spec.TO, "outside the window"))
    assert isinstance(exc, PermanentError)
    assert exc.code == 131047 and exc.info["kind"] == "permanent"
    assert "(131047) Re-engagement message" in str(exc) and "24 hours" in str(exc)
    assert exc.info["details"].startswith("Message failed to send")
    assert len(api.requests()) == 1


def test_same_code_means_the_same_thing_whatever_the_status(api) -> None:
    api.faults({"status": 429, "code": 131026, "times": 1})  # permanent, though sent as 429
    exc = failure(producers.send_text(spec.TO, "undeliverable"))
    assert isinstance(exc, PermanentError) and exc.code == 131026
    assert len(api.requests()) == 1


def test_account_error_pauses_the_number_then_a_probe_resumes_it(stack, api) -> None:
    api.faults(
        {
            "status": 401,
            "code": 190,
            "message": "Error validating access token: Session has expired",
            "times": 1,
        }
    )
    outcome = producers.send_text(spec.TO, "token expired, then renewed").get(timeout=TIMEOUT)
    first, second = api.requests()
    assert first["status"] == 401 and second["status"] == 200
    assert second["time"] - first["time"] >= 1.0  # DISPATCH_BREAKER_PROBE_INTERVAL in the tests
    assert outcome["attempts"] == 2
    assert not stack.redis.client().exists("wa:breaker:" + PHONE_NUMBER_ID)
    events = [line.get("event") for line in stack.worker.log_lines()]
    assert "breaker_open" in events and "breaker_closed" in events


def test_retry_after_is_honoured_in_process(api) -> None:
    api.faults({"status": 429, "code": 130429, "retry_after": 1, "times": 1})
    outcome = producers.send_text(spec.TO, "throttled").get(timeout=TIMEOUT)
    first, second = api.requests()
    assert first["status"] == 429 and second["status"] == 200
    assert second["time"] - first["time"] >= 1.0
    assert outcome["attempts"] == 2


def test_long_retry_after_goes_back_to_the_queue(api) -> None:
    # DISPATCH_INLINE_MAX_WAIT is 2s in the tests: a 3s Retry-After must not be slept in the worker.
    api.faults({"status": 429, "retry_after": 3, "times": 1})
    result = producers.send_text(spec.TO, "come back later")
    deadline = time.monotonic() + 3
    states = set()
    while time.monotonic() < deadline and result.state != "SUCCESS":
        states.add(result.state)
        time.sleep(0.1)
    outcome = result.get(timeout=TIMEOUT)
    first, second = api.requests()
    assert "RETRY" in states
    assert second["time"] - first["time"] >= 3.0
    assert outcome["attempts"] == 2


def test_transient_errors_until_the_bound_end_as_exhausted(api) -> None:
    api.faults({"status": 503})
    exc = failure(producers.send_text(spec.TO, "never works"))
    assert isinstance(exc, RetriesExhausted)
    assert exc.info["http_status"] == 503 and exc.info["kind"] == "exhausted" and "6 attempts" in str(exc)
    assert len(api.requests()) == 6  # DISPATCH_MAX_ATTEMPTS in the tests


def test_answer_lost_after_sending_is_ambiguous_and_not_resent(api) -> None:
    api.faults({"drop": True, "accept": True, "times": 1})
    exc = failure(producers.send_text(spec.TO, "did it go?"))
    assert isinstance(exc, AmbiguousError) and exc.info["kind"] == "ambiguous"
    assert len(api.requests()) == 1


def test_read_timeout_is_ambiguous(api) -> None:
    api.faults({"sleep": 3, "accept": True, "times": 1})  # DISPATCH_READ_TIMEOUT is 2s in the tests
    exc = failure(producers.send_text(spec.TO, "slow api"))
    assert isinstance(exc, AmbiguousError) and "may have been delivered" in str(exc)
    assert len(api.requests()) == 1


def test_same_idempotency_key_sends_once(api) -> None:
    first = producers.send_text(spec.TO, "order 42 shipped", idempotency_key="order-42-shipped").get(
        timeout=TIMEOUT
    )
    second = producers.send_text(spec.TO, "order 42 shipped", idempotency_key="order-42-shipped").get(
        timeout=TIMEOUT
    )
    assert second["wamid"] == first["wamid"] and second["duplicate"] is True
    assert len(api.accepted()) == 1


def test_an_app_without_the_project_enqueues_by_name(stack, api, tmp_path) -> None:
    script = textwrap.dedent(f"""
        import json, sys
        sys.path = [p for p in sys.path if p not in ("", ".")]
        from celery import Celery
        app = Celery(broker={stack.redis.url!r}, backend={stack.redis.url!r})
        ok = app.send_task("worker.tasks.send_message", queue="whatsapp",
                           kwargs={{"to": "+919999595313", "type": "text",
                                   "text": {{"body": "from elsewhere"}}}})
        print(json.dumps(ok.get(timeout=30)))
        bad = app.send_task("worker.tasks.send_message", queue="whatsapp",
                            kwargs={{"to": "+919999595313", "type": "text", "text": {{"body": "x" * 5000}}}})
        try:
            bad.get(timeout=30)
        except Exception as exc:
            print(json.dumps({{"state": bad.state, "error": str(exc)}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    ok, bad = (json.loads(line) for line in out.stdout.splitlines())
    assert ok["wamid"].startswith("wamid.") and ok["to"] == "+919999595313"
    assert bad["state"] == "FAILURE" and "text.body" in bad["error"] and "4096" in bad["error"]


def test_logs_follow_a_message_and_hide_secrets(stack, api) -> None:
    result = producers.send_text(spec.TO, "trace me")
    outcome = result.get(timeout=TIMEOUT)
    time.sleep(0.2)
    assert outcome["idempotency_key"] == result.id  # no key given: the task id is the key
    lines = [line for line in stack.worker.log_lines() if line.get("task_id") == result.id]
    events = [(line["event"], line.get("outcome")) for line in lines]
    assert ("attempt", "ok") in events and ("outcome", "sent") in events
    sent = next(line for line in lines if line.get("outcome") == "sent")
    assert sent["wamid"] == outcome["wamid"] and sent["to"] == "+91******5313" and sent["attempts"] == 1
    attempt = next(line for line in lines if line["event"] == "attempt")
    assert attempt["attempt"] == 1 and attempt["http_status"] == 200 and "latency_ms" in attempt
    raw = stack.worker.output()
    assert TOKEN not in raw
    assert "9999595313" not in raw


def test_get_finds_a_result_stored_before_it_was_called_and_no_channel_is_held_per_enqueue(
    stack, api
) -> None:
    r = stack.redis.client()
    result = send_message.delay(to=spec.TO, type="text", text={"body": "stored first"})
    key = f"celery-task-meta-{result.id}"
    # Celery's own backend subscribed to this channel as it published: a round trip per enqueue.
    assert r.pubsub_numsub(key) == [(key, 0)]
    deadline = time.monotonic() + TIMEOUT
    while not r.exists(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert result.get(timeout=TIMEOUT)["wamid"].startswith("wamid.")
