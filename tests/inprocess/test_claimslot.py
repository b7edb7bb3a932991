"""The claim and the slot in one script: what `begin` then `acquire` would give, or no slot."""

from __future__ import annotations

import time

import redis

from worker.delivery.claimslot import ClaimSlot
from worker.delivery.idempotency import PREFIX, IdempotencyStore, State
from worker.delivery.ratelimit import Line, RateLimiter, Verdict, number_key
from worker.recovery.nodes import WORKERS, Registry
from worker.settings import Settings

TO = "+919999595313"
MAX_AGE = 3600.0  # DISPATCH_MAX_AGE's default
FRESH = {"to": TO, "line": Line.NEW, "take_over_stale": False, "max_age": MAX_AGE}  # a first delivery


def parts(
    r: redis.Redis, settings: Settings, node: str = "node-a"
) -> tuple[ClaimSlot, IdempotencyStore, RateLimiter]:
    Registry(r, 10.0).beat(node)
    return ClaimSlot(r), IdempotencyStore(r, 3600, 95.0, (WORKERS, node, 10.0)), RateLimiter(r, settings)


def test_a_fresh_key_is_claimed_with_a_slot_due_now_and_marked_sending(
    r: redis.Redis, settings: Settings
) -> None:
    claim_slot, store, limiter = parts(r, settings)
    claim, slot = claim_slot.take(store, limiter, "k", **FRESH, owner="task-1")
    assert claim.state is State.CLAIMED and slot is not None
    assert slot.verdict is Verdict.OK and slot.wait == 0 and slot.marked_sending
    assert r.hget(PREFIX + "k", "state") == State.SENDING and r.hget(PREFIX + "k", "owner") == "task-1"
    # The next message of the number is spaced after it, as after an `acquire`.
    spacing = 1 / (settings.rate_limit * (1 - settings.rate_headroom))
    assert abs(limiter.acquire("+919876500000").wait - spacing) < spacing / 2


def test_a_key_that_cannot_send_takes_no_slot(r: redis.Redis, settings: Settings) -> None:
    claim_slot, store, limiter = parts(r, settings)
    store.begin("sent", "t0")
    store.sent("sent", attempts=1, wamid="wamid.S", wa_id=None, to=TO)
    store.begin("busy", "t1")
    r.hset(PREFIX + "old", mapping={"state": "pending", "created": time.time() - MAX_AGE - 1, "attempts": 0})
    found = {
        key: claim_slot.take(store, limiter, key, **FRESH, owner="task-2") for key in ("sent", "busy", "old")
    }
    assert {key: (claim.state, slot) for key, (claim, slot) in found.items()} == {
        "sent": (State.SENT, None),
        "busy": (State.BUSY, None),
        "old": (State.CLAIMED, None),  # too old to send: the delivery fails it as expired
    }
    assert not r.exists(number_key(settings.phone_number_id))  # no slot was spent


def test_behind_a_parked_line_a_new_intent_is_given_its_place(r: redis.Redis, settings: Settings) -> None:
    claim_slot, store, limiter = parts(r, settings)
    limiter.acquire_many([(f"+9198765{i:05d}", "") for i in range(40)])  # 0.25 s of slots, then a line
    claim, slot = claim_slot.take(store, limiter, "k", **FRESH, owner="task-1")
    assert claim.state is State.CLAIMED and slot is not None and slot.verdict is Verdict.LATER
    assert slot.wait > settings.slot_max_ahead and not slot.marked_sending
    assert r.hget(PREFIX + "k", "state") == State.CLAIMED  # the delivery releases it and parks
