"""The tracker against a real Redis and real deliveries to the sandbox in a thread: an intent
whose outcome was lost (`ambiguous`) is tied back as `sent` by the first status webhook that
names its key in biz_opaque_callback_data, whichever comes first, the status or the failure.
The entries are the inbox's, as the web process writes them; the scripts are the real ones."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from devtools.webhooks import status_body
from tests.harness import PHONE_NUMBER_ID
from tests.inprocess.conftest import ThreadSandbox
from tests.inprocess.test_statuses import entries
from worker.campaigns.runs import CampaignRuns, RunRef
from worker.delivery.deadletters import DeadLetters
from worker.delivery.errors import AmbiguousError
from worker.delivery.idempotency import PREFIX
from worker.delivery.send import MessageDelivery, SendServices
from worker.statuses.apply import Applier, Reactions
from worker.statuses.tracker import StatusStore

RUN = RunRef(name="promo", run_id="r1")
TO = "+919876500301"
KEY = f"campaign:{RUN.name}:{RUN.run_id}:{TO}"
INTENT = {"to": TO, "type": "text", "text": {"body": "Sale!"}, "idempotency_key": KEY}
OWN = "order=42"  # the app's own biz_opaque_callback_data


def applier(
    r: redis.Redis, send: SendServices, told: list[tuple[str, dict[str, Any], str | None]]
) -> Applier:
    return Applier(
        StatusStore(r, 3600),
        send.windows,
        send.dead,
        Reactions("shop.on_status", None, False, PHONE_NUMBER_ID, {PHONE_NUMBER_ID: "default"}, {}),
        lambda name, kwargs, queue: told.append((name, kwargs, queue)),
        results=send.result_document,
    )


def run_counts(r: redis.Redis) -> tuple[int, int, int]:
    counts = CampaignRuns(r, 3600, StatusStore(r, 3600)).counts(RUN.name, RUN.run_id)
    return counts["sent"], counts["failed"], counts["ambiguous"]


def report_row(r: redis.Redis) -> dict[str, Any]:
    [row] = CampaignRuns(r, 3600, StatusStore(r, 3600)).report(RUN.name, RUN.run_id)
    return row


@pytest.fixture
def run(r: redis.Redis) -> None:
    runs = CampaignRuns(r, 3600, StatusStore(r, 3600))
    runs.start(RUN.name, RUN.run_id, 1)
    runs.record(RUN.name, RUN.run_id, {TO: {"status": "queued", "key": KEY, "task_id": "t-1"}})


def test_an_ambiguous_intent_is_sent_once_a_status_names_it(
    r: redis.Redis, send: SendServices, sandbox: ThreadSandbox, run: None
) -> None:
    sandbox.faults({"drop": True, "accept": True, "times": 1})  # accepted, the answer lost
    with pytest.raises(AmbiguousError):
        MessageDelivery(send, {**INTENT, "biz_opaque_callback_data": OWN}, "t-1", 0, RUN.lane).run()
    [request] = sandbox.state.requests
    assert r.hget(PREFIX + KEY, "state") == "failed" and send.dead.list()[0]["kind"] == "ambiguous"
    assert run_counts(r) == (0, 0, 1) and report_row(r)["status"] == "ambiguous"

    told: list[tuple[str, dict[str, Any], str | None]] = []
    echoed = request["body"]["biz_opaque_callback_data"]  # as Meta echoes it in every status
    bodies = [
        status_body(PHONE_NUMBER_ID, request["wamid"], s, TO, callback_data=echoed) for s in ("sent", "read")
    ]
    applier(r, send, told).apply(entries(*bodies))

    record = r.hgetall(PREFIX + KEY)
    assert (record["state"], record["wamid"]) == ("sent", request["wamid"])
    assert send.dead.list() == [] and r.hget(f"wa:wamid:{request['wamid']}", "key") == KEY
    assert run_counts(r) == (1, 0, 0)
    row = report_row(r)
    assert (row["status"], row["wamid"], row["delivery_status"]) == ("sent", request["wamid"], "read")
    result = json.loads(r.get("celery-task-meta-t-1") or "{}")
    assert result["status"] == "SUCCESS" and result["result"]["wamid"] == request["wamid"]
    [sent, read] = [kwargs["status"] for _, kwargs, _ in told]
    assert (sent["status"], read["status"]) == ("sent", "read")
    assert sent["idempotency_key"] == KEY and sent["task_id"] == "t-1"
    assert sent["campaign"] == {"name": RUN.name, "run_id": RUN.run_id}
    assert sent["biz_opaque_callback_data"] == OWN  # the app sees only its own value


def test_a_status_that_comes_before_the_dead_workers_claim_is_found_makes_it_sent(
    r: redis.Redis, send: SendServices, run: None
) -> None:
    # As a worker SIGKILLed mid-request leaves it: `sending`, by a node that no longer beats.
    now = time.time()
    r.hset(PREFIX + KEY, mapping={"state": "sending", "owner": "t-1:ab12", "node": "gone", "since": now})
    r.hset(PREFIX + KEY, mapping={"created": now, "attempts": 1})
    told: list[tuple[str, dict[str, Any], str | None]] = []
    tracker = f"wd1:{len(KEY)}:{KEY}"
    body = status_body(PHONE_NUMBER_ID, "wamid.T1", "delivered", TO, callback_data=tracker)
    applier(r, send, told).apply(entries(body))
    [(_, kwargs, _)] = told
    assert (kwargs["status"]["idempotency_key"], kwargs["status"]["task_id"]) == (KEY, "t-1")
    assert r.hget(PREFIX + KEY, "state") == "sending"  # its outcome is its delivery's to keep

    # Redelivered: the claim is stale (it may have been sent), and the status said it was.
    result = MessageDelivery(send, INTENT, "t-1", 0, RUN.lane).run()
    assert result["wamid"] == "wamid.T1" and result["wa_id"] == TO.lstrip("+")
    assert r.hget(PREFIX + KEY, "state") == "sent" and r.hget("wa:wamid:wamid.T1", "task_id") == "t-1"
    assert DeadLetters(r, 3600).list() == [] and run_counts(r) == (1, 0, 0)
    assert report_row(r)["wamid"] == "wamid.T1"
