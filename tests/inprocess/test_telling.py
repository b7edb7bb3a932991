"""Told at least once (issue 26.7): a worker that dies after recording a change but before telling
the app leaves a to-tell entry in the same Lua step, and another worker's drain re-tells it once
its lease ends, exactly once, with the same event id. Real Redis, the real scripts; the dying
worker is an enqueue that raises where a killed one would stop."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from devtools.webhooks import inbound_body, payment_body, status_body
from tests.harness import PHONE_NUMBER_ID
from worker.callbacks.deliver import KEY_PREFIX, Routes
from worker.callbacks.outbox import DUE as CALLBACKS_DUE
from worker.callbacks.outbox import EVENT_PREFIX, Outbox
from worker.delivery.deadletters import DeadLetters
from worker.delivery.idempotency import WAMID_PREFIX
from worker.delivery.window import CustomerWindows
from worker.statuses.apply import APP_QUEUE, Applier, Reactions
from worker.statuses.inbox import InboxEntry
from worker.statuses.telling import DUE, ENTRIES
from worker.statuses.tracker import StatusStore

LEASE = 30.0
WAMID = "wamid.TELL1"
CUSTOMER = "919876500301"

Told = list[tuple[str, dict[str, Any], str | None]]


class Died(Exception):
    """Where a worker killed between recording and telling stops."""


def entries(*bodies: dict[str, Any]) -> list[InboxEntry]:
    return [(f"{i}-0", {"body": json.dumps(b), "received": str(time.time())}) for i, b in enumerate(bodies)]


def applier(r: redis.Redis, told: Told, dies: bool = False, routes: Routes | None = None) -> Applier:
    """A worker's applier whose app's tasks land in `told`; with `dies`, enqueuing raises."""

    def enqueue(name: str, kwargs: dict[str, Any], queue: str | None) -> None:
        if dies:
            raise Died(name)
        told.append((name, kwargs, queue))

    reactions = Reactions(
        "shop.on_status",
        "shop.on_inbound",
        False,
        PHONE_NUMBER_ID,
        {PHONE_NUMBER_ID: "default"},
        {},
        payment_task="shop.on_payment",
    )
    store = StatusStore(r, 3600)
    return Applier(
        store, CustomerWindows(r), DeadLetters(r, 3600), reactions, enqueue, routes, tell_lease=LEASE
    )


def died_applying(r: redis.Redis, batch: list[InboxEntry], routes: Routes | None = None) -> None:
    with pytest.raises(Died):
        applier(r, [], dies=True, routes=routes).apply(batch)


def test_a_status_recorded_but_not_told_is_retold_once_after_the_lease(r: redis.Redis) -> None:
    r.hset(WAMID_PREFIX + WAMID, mapping={"key": "order-7", "task_id": "t7"})
    batch = entries(status_body(PHONE_NUMBER_ID, WAMID, "delivered", CUSTOMER))
    died_applying(r, batch)
    assert r.hget(f"wa:status:{WAMID}", "status") == "delivered"  # recorded, nobody told

    told: Told = []
    other = applier(r, told)
    other.apply(batch)  # the inbox redelivers it: nothing changes, so nothing is told
    assert told == [] and other.retell(time.time()) == 0  # within the lease: not yet
    assert other.retell(time.time() + LEASE + 1) == 1
    [(name, kwargs, queue)] = told
    status = kwargs["status"]
    assert (name, queue) == ("shop.on_status", APP_QUEUE)
    assert (status["wamid"], status["status"], status["previous_status"]) == (WAMID, "delivered", None)
    assert (status["idempotency_key"], status["task_id"], status["recipient_id"]) == (
        "order-7",
        "t7",
        CUSTOMER,
    )

    # The same event id as a live worker tells it: the app drops a repeat by it.
    live: Told = []
    r.delete(f"wa:status:{WAMID}")
    applier(r, live).apply(batch)
    assert live[0][1]["status"] == status
    assert other.retell(time.time() + 3 * LEASE) == 0 and len(told) == 1  # once
    assert not r.exists(ENTRIES, DUE)


def test_an_inbound_message_recorded_but_not_told_is_retold_once(r: redis.Redis) -> None:
    batch = entries(inbound_body(PHONE_NUMBER_ID, "wamid.IN1", CUSTOMER, "Where is my order?"))
    died_applying(r, batch)
    told: Told = []
    other = applier(r, told)
    other.apply(batch)
    assert told == []
    assert other.retell(time.time() + LEASE + 1) == 1
    [(name, kwargs, queue)] = told
    message = kwargs["message"]
    assert (name, queue) == ("shop.on_inbound", APP_QUEUE)
    assert message["wamid"] == "wamid.IN1" and message["content"] == {
        "kind": "text",
        "body": "Where is my order?",
    }

    r.delete("wa:inbound:wamid.IN1")
    live: Told = []
    applier(r, live).apply(batch)
    assert live[0][1]["message"]["event_id"] == message["event_id"]
    assert other.retell(time.time() + 3 * LEASE) == 0 and len(told) == 1


def test_a_payment_recorded_but_not_told_is_retold_once(r: redis.Redis) -> None:
    batch = entries(payment_body(PHONE_NUMBER_ID, "wamid.PAY1", CUSTOMER, "ref-1"))
    died_applying(r, batch)
    told: Told = []
    other = applier(r, told)
    other.apply(batch)
    assert other.retell(time.time() + LEASE + 1) == 1
    [(name, kwargs, _)] = told
    assert name == "shop.on_payment" and kwargs["payment"]["reference_id"] == "ref-1"
    assert other.retell(time.time() + 3 * LEASE) == 0 and len(told) == 1


def test_two_drains_at_once_retell_an_entry_once(r: redis.Redis) -> None:
    died_applying(r, entries(status_body(PHONE_NUMBER_ID, WAMID, "sent", CUSTOMER)))
    first: Told = []
    second: Told = []
    later = time.time() + LEASE + 1
    taken = applier(r, first).tells.take(later, 10)  # a drain that took it and died re-telling
    assert len(taken) == 1
    assert applier(r, second).retell(later) == 0  # leased: the other drain leaves it
    assert applier(r, second).retell(later + LEASE + 1) == 1 and len(second) == 1


def test_a_callback_recorded_but_not_queued_is_queued_by_the_retell(r: redis.Redis) -> None:
    r.hset(WAMID_PREFIX + WAMID, mapping={"key": "order-7", "task_id": "t7"})
    r.set(KEY_PREFIX + "t7", "shop")
    routes = Routes(Outbox(r, 3600), {"shop": None})
    batch = entries(status_body(PHONE_NUMBER_ID, WAMID, "read", CUSTOMER))
    died_applying(r, batch, routes)
    assert r.zcard(CALLBACKS_DUE) == 0
    told: Told = []
    assert applier(r, told, routes=routes).retell(time.time() + LEASE + 1) == 1
    [entry] = r.zrange(CALLBACKS_DUE, 0, -1)
    body = json.loads(r.hget(EVENT_PREFIX + entry, "body") or "{}")
    assert body["type"] == "message.status" and body["id"] == told[0][1]["status"]["event_id"]
    assert body["data"] == told[0][1]["status"]
    assert not r.exists(ENTRIES, DUE)


def test_a_normal_apply_leaves_nothing_to_tell(r: redis.Redis) -> None:
    routes = Routes(Outbox(r, 3600), {"shop": None})
    told: Told = []
    live = applier(r, told, routes=routes)
    live.apply(
        entries(
            status_body(PHONE_NUMBER_ID, WAMID, "sent", CUSTOMER),
            status_body(PHONE_NUMBER_ID, WAMID, "delivered", CUSTOMER),
            inbound_body(PHONE_NUMBER_ID, "wamid.IN2", CUSTOMER, "hi"),
            payment_body(PHONE_NUMBER_ID, "wamid.PAY2", CUSTOMER, "ref-2"),
        )
    )
    assert [name for name, _, _ in told] == [
        "shop.on_status",
        "shop.on_status",
        "shop.on_inbound",
        "shop.on_payment",
    ]
    assert not r.exists(ENTRIES, DUE)
    assert live.retell(time.time() + 3 * LEASE) == 0


def test_nothing_is_written_to_tell_when_nobody_is_told(r: redis.Redis) -> None:
    store = StatusStore(r, 3600)
    quiet = Applier(
        store,
        CustomerWindows(r),
        DeadLetters(r, 3600),
        Reactions(None, None, False, PHONE_NUMBER_ID, {}, {}),
        lambda *_: pytest.fail("nothing to enqueue"),
    )
    quiet.apply(entries(status_body(PHONE_NUMBER_ID, WAMID, "sent", CUSTOMER)))
    assert r.hget(f"wa:status:{WAMID}", "status") == "sent" and not r.exists(ENTRIES, DUE)
