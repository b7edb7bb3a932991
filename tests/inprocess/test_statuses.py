"""Applying status webhooks to real deliveries: campaign counts and report, failures kept for
re-drive, replays that change nothing. Deliveries go to the sandbox in a thread; the entries are
the inbox's, as the web process writes them."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from devtools.webhooks import status_body
from tests.harness import PHONE_NUMBER_ID
from worker.campaigns.runs import CampaignRuns, RunRef
from worker.delivery.idempotency import PREFIX
from worker.delivery.send import SendServices, deliver_message
from worker.statuses.apply import APP_QUEUE, Applier, Reactions
from worker.statuses.inbox import InboxEntry
from worker.statuses.tracker import StatusStore

RUN = RunRef(name="promo", run_id="r1")
NUMBERS = ["+919876500201", "+919876500202", "+919876500203"]
UNDELIVERABLE = {"code": 131026, "title": "Message undeliverable", "message": "x", "details": "y"}


def entries(*bodies: dict[str, Any]) -> list[InboxEntry]:
    return [(f"{i}-0", {"body": json.dumps(b), "received": str(time.time())}) for i, b in enumerate(bodies)]


def test_a_run_counts_delivered_read_and_undelivered_and_keeps_the_failure(
    r: redis.Redis, send: SendServices
) -> None:
    statuses = StatusStore(r, 3600)
    runs = CampaignRuns(r, 3600, statuses)
    runs.start(RUN.name, RUN.run_id, len(NUMBERS))
    wamids = {}
    for n in NUMBERS:
        key = f"campaign:{RUN.name}:{RUN.run_id}:{n}"
        intent = {"to": n, "type": "text", "text": {"body": "Sale!"}, "idempotency_key": key}
        runs.record(RUN.name, RUN.run_id, {n: {"status": "queued", "key": key, "task_id": f"t-{n}"}})
        wamids[n] = deliver_message(send, intent, f"t-{n}", 0, RUN.lane)["wamid"]
    told: list[tuple[str, dict[str, Any], str | None]] = []
    applier = Applier(
        statuses,
        send.windows,
        send.dead,
        Reactions("shop.on_status", None, False, PHONE_NUMBER_ID, {PHONE_NUMBER_ID: "default"}, {}),
        lambda name, kwargs, queue: told.append((name, kwargs, queue)),
    )
    a, b, c = NUMBERS
    batch = entries(
        status_body(PHONE_NUMBER_ID, wamids[a], "read", a),
        status_body(PHONE_NUMBER_ID, wamids[a], "delivered", a),  # late: changes nothing
        status_body(PHONE_NUMBER_ID, wamids[b], "delivered", b),
        status_body(PHONE_NUMBER_ID, wamids[c], "failed", c, error=UNDELIVERABLE),
    )
    applier.apply(batch)
    applier.apply(batch)  # a replay of the whole batch: nothing more

    assert runs.delivery(RUN.name, RUN.run_id) == {
        "delivered": 2,
        "read": 1,
        "undelivered": 1,
        "undelivered_by_code": {"131026": 1},
    }
    rows = {row["to"]: row for row in runs.report(RUN.name, RUN.run_id)}
    assert [rows[n]["delivery_status"] for n in NUMBERS] == ["read", "delivered", "failed"]
    assert rows[c]["delivery_error_code"] == 131026 and rows[c]["status"] == "failed"

    assert [(k["status"]["wamid"], k["status"]["status"]) for _, k, _ in told] == [
        (wamids[a], "read"),
        (wamids[b], "delivered"),
        (wamids[c], "failed"),
    ]
    assert {name for name, _, _ in told} == {"shop.on_status"} and {q for _, _, q in told} == {APP_QUEUE}
    assert told[0][1]["status"]["campaign"] == {"name": "promo", "run_id": "r1"}

    (dead,) = send.dead.list(code=131026)
    assert dead["kind"] == "undelivered" and dead["intent"]["to"] == c
    assert send.dead.reopen(dead["idempotency_key"]) is not None  # re-drivable: sendable again
    assert r.hget(PREFIX + dead["idempotency_key"], "state") == "pending"


def test_a_template_status_update_asks_for_a_resync_of_that_template(
    r: redis.Redis, send: SendServices
) -> None:
    told: list[tuple[str, dict[str, Any], str | None]] = []
    applier = Applier(
        StatusStore(r, 3600),
        send.windows,
        send.dead,
        Reactions(
            None,
            None,
            False,
            PHONE_NUMBER_ID,
            {PHONE_NUMBER_ID: "default", "1111111111": "support"},
            accounts={"waba-1234": "default", "waba-support": "support"},
        ),
        lambda name, kwargs, queue: told.append((name, kwargs, queue)),
    )
    update = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba-1234",
                "changes": [
                    {
                        "field": "message_template_status_update",
                        "value": {"event": "DISABLED", "message_template_name": "summer_sale"},
                    }
                ],
            }
        ],
    }
    applier.apply(entries(update, update))  # delivered twice: one re-sync
    assert told == [("worker.tasks.sync_templates", {"name": "summer_sale", "sender": "default"}, None)]
    told.clear()
    on_support = json.loads(json.dumps(update).replace("waba-1234", "waba-support"))
    applier.apply(entries(on_support))  # the entry's id is the account whose template changed
    assert told == [("worker.tasks.sync_templates", {"name": "summer_sale", "sender": "support"}, None)]
    told.clear()
    unnamed = {**update, "entry": [{k: v for k, v in update["entry"][0].items() if k != "id"}]}
    applier.apply(entries(unnamed))  # no account named: every account's registry re-syncs it
    assert [kwargs["sender"] for _, kwargs, _ in told] == ["default", "support"]
