"""A whole delivery in process: the real client over HTTP to the sandbox thread, the real Lua scripts."""

from __future__ import annotations

import json

import pytest
import redis
import structlog

from tests import spec_examples as spec
from tests.inprocess.conftest import ThreadSandbox
from worker.delivery.callback_data import with_tracker
from worker.delivery.errors import AmbiguousError, InvalidIntent, PermanentError
from worker.delivery.idempotency import PREFIX
from worker.delivery.send import Lane, MessageDelivery, Requeue, SendServices
from worker.ops import logs

TEXT = {"to": spec.TO, "type": "text", "text": {"preview_url": False, "body": "This is a test"}}


def test_a_text_is_sent_once_with_the_spec_body(send: SendServices, sandbox: ThreadSandbox) -> None:
    result = MessageDelivery(send, dict(TEXT), "task-1", requeues=0).run()
    [request] = sandbox.accepted()
    tracked = {**spec.TEXT, "biz_opaque_callback_data": with_tracker("task-1", None)}  # names its key
    assert request["body"] == tracked and result["wamid"] == request["wamid"]
    again = MessageDelivery(send, dict(TEXT), "task-1", requeues=0).run()
    assert again["duplicate"] is True and len(sandbox.state.requests) == 1


def test_a_permanent_error_fails_once_and_is_kept(
    send: SendServices, sandbox: ThreadSandbox, r: redis.Redis
) -> None:
    sandbox.faults({"status": 400, "code": 131047, "message": "Re-engagement message"})
    with pytest.raises(PermanentError) as caught:
        MessageDelivery(send, dict(TEXT), "task-2", requeues=0).run()
    assert caught.value.code == 131047 and len(sandbox.state.requests) == 1
    assert r.hget(PREFIX + "task-2", "state") == "failed"
    assert [e["code"] for e in send.dead.list()] == [131047]


def test_a_transient_error_past_the_inline_tries_goes_back_to_the_queue(
    send: SendServices, sandbox: ThreadSandbox, r: redis.Redis
) -> None:
    sandbox.faults({"status": 503, "retry_after": 10})  # longer than DISPATCH_INLINE_MAX_WAIT
    with pytest.raises(Requeue) as caught:
        MessageDelivery(send, dict(TEXT), "task-3", requeues=0).run()
    assert caught.value.countdown == 10 and len(sandbox.state.requests) == 1
    assert r.hget(PREFIX + "task-3", "state") == "pending"  # safe to send again


def test_an_answer_lost_after_sending_is_ambiguous(send: SendServices, sandbox: ThreadSandbox) -> None:
    sandbox.faults({"drop": True, "accept": True, "times": 1})
    with pytest.raises(AmbiguousError):
        MessageDelivery(send, dict(TEXT), "task-4", requeues=0).run()
    assert len(sandbox.state.requests) == 1


def test_an_account_error_opens_the_breaker(send: SendServices, sandbox: ThreadSandbox) -> None:
    sandbox.faults({"status": 401, "code": 190})
    with pytest.raises(Requeue) as caught:
        MessageDelivery(send, dict(TEXT), "task-5", requeues=0).run()
    assert caught.value.countdown == send.settings.breaker_probe_interval
    assert send.sender("default").breaker.status()["code"] == "190"


def test_a_lane_tallies_its_outcome_in_its_run(
    send: SendServices, sandbox: ThreadSandbox, r: redis.Redis
) -> None:
    send.sender("default").limiter.set_lane("promo", 50.0)
    lane = Lane(name="promo", tally="wa:run:promo:1:counts")
    MessageDelivery(send, {**TEXT, "idempotency_key": "campaign:promo:1:x"}, "task-6", 0, lane).run()
    assert r.hgetall("wa:run:promo:1:counts") == {"sent": "1"}


def test_each_delivery_logs_its_own_fields_only(
    send: SendServices, sandbox: ThreadSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a campaign chunk's pool thread runs them: one recipient after another on one thread,
    built directly (not through the task). A refused recipient's line names its own task, and
    neither the previous recipient's number nor its attempt."""
    logs.configure("INFO")
    try:
        MessageDelivery(send, {**TEXT, "to": "+919876500111"}, "task-a", requeues=0).run()
        with pytest.raises(InvalidIntent):
            MessageDelivery(send, {"to": "+91", "type": "text", "text": {"body": "x"}}, "task-b", 0).run()
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    [refused] = [line for line in lines if line.get("outcome") == "invalid"]
    assert refused["task_id"] == "task-b"
    assert "to" not in refused and "attempt" not in refused
    assert {line["task_id"] for line in lines if line.get("to") == "+91******0111"} == {"task-a"}
