"""The claim script's branches: who may send a key, and what a second delivery finds."""

from __future__ import annotations

import time

import redis

from worker.delivery.idempotency import PREFIX, IdempotencyStore, State

# The stale bound is a constructor argument (production derives it from the timeouts, ~95 s);
# a short one here exercises the take-over branches without waiting.
STALE_AFTER = 0.2


def store(r: redis.Redis) -> IdempotencyStore:
    return IdempotencyStore(r, ttl=3600, stale_after=STALE_AFTER)


def test_a_new_key_is_claimed_and_a_second_owner_finds_it_busy(r: redis.Redis) -> None:
    s = store(r)
    assert s.begin("k", "task-1").state is State.CLAIMED
    assert s.begin("k", "task-2").state is State.BUSY
    assert r.hget(PREFIX + "k", "owner") == "task-1"
    assert 3590 < r.ttl(PREFIX + "k") <= 3600


def test_a_stale_claim_is_taken_over_because_nothing_was_sent(r: redis.Redis) -> None:
    s = store(r)
    s.begin("k", "dead-worker")
    time.sleep(STALE_AFTER + 0.05)
    assert s.begin("k", "task-2").state is State.CLAIMED
    assert r.hget(PREFIX + "k", "owner") == "task-2"


def test_a_stale_sending_record_is_ambiguous_unless_at_least_once(r: redis.Redis) -> None:
    s = store(r)
    s.begin("k", "dead-worker")
    s.sending("k")
    assert s.begin("k", "task-2").state is State.BUSY  # still within the bound: maybe in flight
    time.sleep(STALE_AFTER + 0.05)
    assert s.begin("k", "task-2").state is State.STALE
    assert s.begin("k", "task-3", take_over_stale=True).state is State.CLAIMED


def test_finished_keys_replay_their_outcome_and_keep_their_attempts(r: redis.Redis) -> None:
    s = store(r)
    s.begin("sent", "t")
    s.sent("sent", 2, "wamid.X", "919999595313", "+919999595313", tally="wa:run:c:1:counts")
    claim = s.begin("sent", "t2")
    assert (claim.state, claim.record["wamid"], claim.attempts) == (State.SENT, "wamid.X", 2)
    s.begin("failed", "t")
    s.failed("failed", 1, {"kind": "permanent", "code": 131047, "error": "x"}, tally="wa:run:c:1:counts")
    claim = s.begin("failed", "t2")
    assert claim.state is State.FAILED and claim.error["code"] == 131047
    assert r.hgetall("wa:run:c:1:counts") == {"sent": "1", "failed": "1", "failed:131047": "1"}


def test_a_released_key_is_claimed_again_at_once(r: redis.Redis) -> None:
    s = store(r)
    s.begin("k", "t")
    s.release("k", 3)
    claim = s.begin("k", "t2")
    assert claim.state is State.CLAIMED and claim.attempts == 3
