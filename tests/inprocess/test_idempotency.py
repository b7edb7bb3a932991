"""The claim script's branches: who may send a key, and what a second delivery finds.

Ownership follows the owner's heartbeat: a live node keeps its claim however slow its send, a
node that stopped beating loses it at once."""

from __future__ import annotations

import time

import redis

from worker.delivery.idempotency import PREFIX, IdempotencyStore, State, StoredResult
from worker.recovery.nodes import WORKERS, Registry

TIMEOUT = 10.0  # DISPATCH_HEARTBEAT_TIMEOUT's default


def store(r: redis.Redis, node: str, stale_after: float = 95.0) -> IdempotencyStore:
    return IdempotencyStore(r, ttl=3600, stale_after=stale_after, liveness=(WORKERS, node, TIMEOUT))


def test_a_live_owner_keeps_its_claim_and_a_second_owner_finds_it_busy(r: redis.Redis) -> None:
    Registry(r, TIMEOUT).beat("node-a")
    assert store(r, "node-a").begin("k", "task-1").state is State.CLAIMED
    assert store(r, "node-b").begin("k", "task-2").state is State.BUSY
    assert store(r, "node-a").sending("k", "task-1")
    assert store(r, "node-b").begin("k", "task-2").state is State.BUSY  # a slow send is never taken
    assert r.hget(PREFIX + "k", "owner") == "task-1" and r.hget(PREFIX + "k", "node") == "node-a"
    assert 3590 < r.ttl(PREFIX + "k") <= 3600


def test_a_dead_owners_claim_is_taken_over_at_once_because_nothing_was_sent(r: redis.Redis) -> None:
    r.hset(WORKERS, "dead-node", time.time() - TIMEOUT - 1)  # its last beat, 11 s ago
    store(r, "dead-node").begin("k", "task-1")
    Registry(r, TIMEOUT).beat("node-b")
    assert store(r, "node-b").begin("k", "task-2").state is State.CLAIMED
    assert r.hget(PREFIX + "k", "node") == "node-b"


def test_a_dead_owner_mid_request_is_ambiguous_unless_at_least_once(r: redis.Redis) -> None:
    store(r, "gone-node").begin("k", "task-1")  # a node that never beat (or left the registry)
    store(r, "gone-node").sending("k", "task-1")
    assert store(r, "node-b").begin("k", "task-2").state is State.STALE
    assert store(r, "node-b").begin("k", "task-3", take_over_stale=True).state is State.CLAIMED


def test_a_claim_a_live_node_lost_track_of_goes_stale_after_the_backstop(r: redis.Redis) -> None:
    # The backstop is a constructor argument (production derives ~95 s from the timeouts); a short
    # one here exercises the branch without waiting.
    Registry(r, TIMEOUT).beat("node-a")
    store(r, "node-a", stale_after=0.2).begin("k", "task-1")
    assert store(r, "node-a", stale_after=0.2).begin("k", "task-2").state is State.BUSY
    time.sleep(0.25)
    assert store(r, "node-a", stale_after=0.2).begin("k", "task-2").state is State.CLAIMED


def test_a_claim_left_by_an_earlier_delivery_of_the_same_task_is_taken_again_at_once(r: redis.Redis) -> None:
    """A Redis restart drops a started delivery from its live worker's memory after its claim; the
    message comes back under the same task id. Before, that delivery found its own task's claim
    busy and looked again every 10 s until the backstop (95 s) passed (`make soak-restart`: 3
    rounds of 30 took 100 s). Only `claimed` (nothing sent): a `sending` one stays busy, and
    another task's claim is still never taken from a live node."""
    Registry(r, TIMEOUT).beat("node-a")
    assert store(r, "node-a").begin("k", "task-1:a").state is State.CLAIMED
    assert store(r, "node-a").begin("k", "task-2:c").state is State.BUSY
    assert store(r, "node-a").begin("k", "task-1:b").state is State.CLAIMED
    assert r.hget(PREFIX + "k", "owner") == "task-1:b"
    assert not store(r, "node-a").sending("k", "task-1:a")  # the earlier one, if it runs on, stops
    assert store(r, "node-a").sending("k", "task-1:b")
    assert store(r, "node-a").begin("k", "task-1:d").state is State.BUSY  # a request may be out


def test_a_delivery_whose_claim_was_taken_over_can_neither_send_nor_release_it(r: redis.Redis) -> None:
    # Worker A claims, then is cut off from Redis past the heartbeat timeout; its message is
    # delivered again to B under the same task id, and B claims with a token of its own.
    r.hset(WORKERS, "node-a", time.time() - TIMEOUT - 1)
    store(r, "node-a").begin("k", "task-1:a")
    Registry(r, TIMEOUT).beat("node-b")
    assert store(r, "node-b").begin("k", "task-1:b").state is State.CLAIMED
    # A is back: its `sending` mark (the fence before its request) and its release both refuse.
    assert not store(r, "node-a").sending("k", "task-1:a")
    assert not store(r, "node-a").release("k", 1, "task-1:a")
    assert r.hget(PREFIX + "k", "state") == "claimed" and r.hget(PREFIX + "k", "owner") == "task-1:b"
    assert store(r, "node-b").sending("k", "task-1:b")
    assert store(r, "node-b").sending("k", "task-1:b")  # a retry after a lost reply: still B's
    store(r, "node-b").sent("k", attempts=1, wamid="wamid.B", wa_id=None, to="+919999595313")
    assert not store(r, "node-a").release("k", 1, "task-1:a") and r.hget(PREFIX + "k", "state") == "sent"


def test_finished_keys_replay_their_outcome_and_keep_their_attempts(r: redis.Redis) -> None:
    s = store(r, "node-a")
    s.begin("sent", "t")
    s.sent(
        "sent",
        attempts=2,
        wamid="wamid.X",
        wa_id="919999595313",
        to="+919999595313",
        tally="wa:run:c:1:counts",
    )
    claim = s.begin("sent", "t2")
    assert (claim.state, claim.record["wamid"], claim.attempts) == (State.SENT, "wamid.X", 2)
    s.begin("failed", "t")
    s.failed("failed", 1, {"kind": "permanent", "code": 131047, "error": "x"}, tally="wa:run:c:1:counts")
    claim = s.begin("failed", "t2")
    assert claim.state is State.FAILED and claim.error["code"] == 131047
    assert r.hgetall("wa:run:c:1:counts") == {"sent": "1", "failed": "1", "failed:131047": "1"}


def test_a_released_key_is_claimed_again_at_once(r: redis.Redis) -> None:
    Registry(r, TIMEOUT).beat("node-a")
    s = store(r, "node-a")
    s.begin("k", "t")
    assert s.release("k", 3, "t")
    claim = s.begin("k", "t2")
    assert claim.state is State.CLAIMED and claim.attempts == 3


def test_a_chunks_claims_in_one_round_trip_find_what_one_by_one_claims_find(r: redis.Redis) -> None:
    Registry(r, TIMEOUT).beat("node-a")
    s = store(r, "node-a")
    s.begin("sent", "t0")
    s.sent("sent", attempts=1, wamid="wamid.S", wa_id=None, to="+919999595313")
    s.begin("busy", "t1")
    claims = store(r, "node-b").begin_many({"sent": "t2", "busy": "t3", "new": "t4"})
    assert {key: claim.state for key, claim in claims.items()} == {
        "sent": State.SENT,
        "busy": State.BUSY,
        "new": State.CLAIMED,
    }
    assert claims["sent"].record["wamid"] == "wamid.S"
    assert r.hget(PREFIX + "new", "owner") == "t4" and r.hget(PREFIX + "new", "node") == "node-b"
    assert r.hget(PREFIX + "busy", "owner") == "t1"  # a live owner's claim untouched


def test_a_sends_result_is_stored_and_published_with_its_record(r: redis.Redis) -> None:
    s = store(r, "node-a")
    s.begin("k", "task-1")
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe("celery-task-meta-task-1")
    listener.get_message(timeout=1)
    document = StoredResult("celery-task-meta-task-1", '{"status": "SUCCESS"}', 600)
    s.sent("k", attempts=1, wamid="wamid.X", wa_id=None, to="+919999595313", result=document)
    assert r.hget(PREFIX + "k", "state") == State.SENT
    assert r.get(document.key) == document.document and 590 < r.ttl(document.key) <= 600
    message = listener.get_message(timeout=2)
    assert message is not None and message["data"] == document.document
