"""The Lua scripts (worker/scripts/) against a real redis-server: each loads, each says what it
takes and returns, none is defined anywhere else, and one table per script walks its branches:
(what Redis holds before, KEYS, ARGV) -> (the reply, what Redis holds after)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from worker.scripts import load, names

NOW = time.time()


@pytest.mark.parametrize("name", names())
def test_every_script_loads_and_has_its_header(r: redis.Redis, name: str) -> None:
    script = load(name)
    assert r.script_load(script.source) == script.sha
    header = script.source.split("\n--@include", 1)[0]
    for part in ("KEYS:", "ARGV:", "Returns:"):
        assert f"-- {part}" in header, f"{name}.lua: no '-- {part}' line in its header"
    assert "--@include" not in script.source  # every part was put in


def run(r: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    return load(name).on(r)(keys, args)


def state(r: redis.Redis, key: str) -> Any:
    kind = r.type(key)
    return {
        "hash": r.hgetall,
        "string": r.get,
        "zset": lambda k: r.zrange(k, 0, -1),
        "none": lambda k: None,
    }[kind](key)


MOVE = [
    # before, from, to, error -> reply, state after
    ({"state": "failed"}, "failed", "pending", None, 1, "pending"),
    ({"state": "sent"}, "failed", "pending", None, 0, "sent"),  # a sent key is never reopened
    ({"state": "sending"}, "failed", "pending", None, 0, "sending"),
    ({"state": "sent"}, "sent", "failed", '{"code": 131026}', 1, "failed"),
]


@pytest.mark.parametrize(("before", "source", "target", "error", "reply", "after"), MOVE)
def test_move_state(
    r: redis.Redis, before: dict, source: str, target: str, error: str | None, reply: int, after: str
) -> None:
    r.hset("rec", mapping=before)
    args = [source, target] + ([error] if error else [])
    assert run(r, "move_state", ["rec"], args) == reply
    assert r.hget("rec", "state") == after
    assert r.hget("rec", "error") == (error if reply and error else None)


@pytest.mark.parametrize(
    ("stored", "at", "reply", "after"),
    [(None, 100.0, 1, 100.0), (100.0, 90.0, 0, 100.0), (100.0, 110.0, 1, 110.0)],
)
def test_touch_window_keeps_the_latest(
    r: redis.Redis, stored: float | None, at: float, reply: int, after: float
) -> None:
    if stored:
        r.set("win", NOW + stored)
    assert run(r, "touch_window", ["win"], [NOW + at, 3600]) == reply
    assert float(r.get("win")) == NOW + after
    assert (r.ttl("win") > 0) is bool(reply)  # expires as the window closes


def test_record_recipient_counts_the_first_write_only(r: redis.Redis) -> None:
    entry = json.dumps({"status": "sent"})
    assert run(r, "record_recipient", ["report", "counts"], ["+91", entry, "sent"]) == 1
    assert run(r, "record_recipient", ["report", "counts"], ["+91", "{}", "failed"]) == 0
    assert state(r, "report") == {"+91": entry} and state(r, "counts") == {"sent": "1"}


@pytest.mark.parametrize(
    ("counted", "to", "wait", "admitted", "tally"),
    [
        ([], "a", "1", True, None),  # room: counted now
        (["a", "b"], "a", "1", True, None),  # already counted: goes, full or not
        (["a", "b"], "c", "0", True, None),  # full, but a transactional send never waits
        (["a", "b"], "c", "1", False, "counts"),  # full: a campaign send waits; its run is told
    ],
)
def test_reach_admit(
    r: redis.Redis, counted: list[str], to: str, wait: str, admitted: bool, tally: str | None
) -> None:
    now = time.time()  # the script reads the server's clock: counted 100 s ago by it
    for i, who in enumerate(counted):
        r.zadd("reach", {who: now - 100 + i})
    reply = float(run(r, "reach_admit", ["reach", tally or ""], [to, 2, wait, 86400]))
    assert (reply == 0) is admitted
    if not admitted:
        assert 86290 < reply <= 86300 and int(r.hget("counts", "daily_limit_until")) >= now + 86299
    assert (r.zscore("reach", to) is not None) is (admitted or to in counted)


@pytest.mark.parametrize(
    ("stored", "status", "rank", "changed", "previous"),
    [
        (None, "sent", 1, 1, ""),
        ({"status": "sent", "rank": "1"}, "delivered", 2, 1, "sent"),
        ({"status": "read", "rank": "3"}, "delivered", 2, 0, "read"),  # late: changes nothing
        ({"status": "read", "rank": "3"}, "read", 3, 0, "read"),  # a replay
    ],
)
def test_advance_status_only_moves_forward(
    r: redis.Redis, stored: dict | None, status: str, rank: int, changed: int, previous: str
) -> None:
    if stored:
        r.hset("st", mapping=stored)
    r.hset("idx", mapping={"key": "k1", "task_id": "t1"})
    reply = run(r, "advance_status", ["st", "idx"], [status, rank, NOW, "", 60, "", "", "wa:run:"])
    assert reply[:4] == [changed, previous, 0, 0]
    assert dict(zip(reply[4::2], reply[5::2], strict=True)) == {"key": "k1", "task_id": "t1"}
    assert r.hget("st", "status") == (status if changed else stored["status"])  # type: ignore[index]


def test_a_wamids_pricing_is_kept_and_counted_in_its_run_once_whatever_its_statuses_order(
    r: redis.Redis,
) -> None:
    r.delete("st", "wa:run:sale:r1:counts")
    r.hset("idx", mapping={"key": "k1", "campaign": "sale", "run_id": "r1"})
    r.hset("wa:run:sale:r1:counts", "sent", 1)
    pricing = '{"billable": true, "pricing_model": "PMP", "category": "marketing", "type": "regular"}'
    args = [pricing, "billable:marketing", "wa:run:"]
    replies = [
        run(r, "advance_status", ["st", "idx"], [status, rank, NOW, "", 60, *args])[:3]
        for status, rank in (("read", 4), ("sent", 1), ("delivered", 3), ("read", 4))
    ]
    assert replies == [[1, "", 1], [0, "read", 0], [0, "read", 0], [0, "read", 0]]
    assert r.hget("st", "pricing") == pricing
    assert r.hget("wa:run:sale:r1:counts", "billable:marketing") == "1"
    # A run past its TTL is not brought back by a late status of one of its messages.
    r.delete("st", "wa:run:sale:r1:counts")
    assert run(r, "advance_status", ["st", "idx"], ["sent", 1, NOW, "", 60, *args])[:3] == [1, "", 1]
    assert not r.exists("wa:run:sale:r1:counts")


TRACKED = ["st", "wa:wamid:wamid.X", "wa:idem:k1", "dead", "dead:index"]
ORIGIN = {"key": "k1", "to": "+919", "task_id": "t1", "type": "text", "campaign": "sale", "run_id": "r1"}


def tracked_status(r: redis.Redis, status: str = "sent", rank: int = 1) -> list[Any]:
    """advance_status for wamid.X, whose biz_opaque_callback_data named the key k1."""
    args = [status, rank, NOW, "", 60, "", "", "wa:run:", "k1", "wamid.X", "919", NOW]
    return run(r, "advance_status", TRACKED, args)


def ambiguous(r: redis.Redis, tally: str = "counts") -> list[Any]:
    args = ["k1", 1, '{"kind": "ambiguous"}', NOW, 60, json.dumps(ORIGIN), tally, "wa:wamid:", '{"d": 1}', 60]
    return run(r, "fail_ambiguous", ["wa:idem:k1", "dead", "dead:index"], args)


def test_a_status_naming_an_ambiguous_key_ties_it_back_as_sent_once(r: redis.Redis) -> None:
    r.delete(*TRACKED, "counts")
    r.hset("wa:idem:k1", mapping={"state": "sending", "owner": "t1:ab12", "attempts": 1})
    r.hset("counts", mapping={"sent": 5})
    assert ambiguous(r) == ["failed"]
    assert r.hget("wa:idem:k1", "state") == "failed" and r.hget("dead", "k1") == '{"d": 1}'
    assert r.hgetall("counts") == {"sent": "5", "failed": "1", "failed:ambiguous": "1"}
    reply = tracked_status(r)
    assert reply[:4] == [1, "", 0, 1]  # changed, no previous, not priced, tied: sent
    assert dict(zip(reply[4::2], reply[5::2], strict=True)) == {**ORIGIN, "attempts": "1"}
    record = r.hgetall("wa:idem:k1")
    assert (record["state"], record["wamid"], record["wa_id"], record["to"]) == (
        "sent",
        "wamid.X",
        "919",
        "+919",
    )
    assert "error" not in record and "origin" not in record
    assert not r.exists("dead") and r.zscore("dead:index", "k1") is None
    assert r.hgetall("counts") == {"sent": "6", "failed": "0", "failed:ambiguous": "0"}
    # Its delivered, and the same status again: the index is there now, nothing moves twice.
    assert tracked_status(r, "delivered", 3)[:4] == [1, "sent", 0, 0]
    assert tracked_status(r, "delivered", 3)[:4] == [0, "delivered", 0, 0]
    assert r.hgetall("counts") == {"sent": "6", "failed": "0", "failed:ambiguous": "0"}


def test_a_status_for_a_request_in_flight_is_noted_and_its_ambiguous_end_is_sent(r: redis.Redis) -> None:
    r.delete(*TRACKED, "counts")
    r.hset("wa:idem:k1", mapping={"state": "sending", "owner": "t1:ab12", "attempts": 1})
    r.hset("counts", mapping={"sent": 5})
    reply = tracked_status(r)
    assert reply[:4] == [1, "", 0, 2]  # noted: what is known of it is its key and task
    assert dict(zip(reply[4::2], reply[5::2], strict=True)) == {"key": "k1", "task_id": "t1"}
    assert not r.exists("wa:wamid:wamid.X")
    assert ambiguous(r) == ["sent", "wamid.X", "919"]  # the worker's death found it accepted
    assert r.hget("wa:idem:k1", "state") == "sent" and r.hget("wa:wamid:wamid.X", "task_id") == "t1"
    assert not r.exists("dead") and r.hgetall("counts") == {"sent": "6"}


@pytest.mark.parametrize(
    "record",
    [
        {"state": "failed", "error": '{"code": 131026}'},  # a definite failure keeps no origin
        {"state": "sent", "wamid": "wamid.Y"},
        {"state": "pending"},
        None,  # a key we do not have
    ],
)
def test_a_tracker_changes_no_other_record(r: redis.Redis, record: dict | None) -> None:
    r.delete(*TRACKED, "counts")
    if record:
        r.hset("wa:idem:k1", mapping=record)
    assert tracked_status(r)[3:] == [0]
    assert (r.hgetall("wa:idem:k1") or None) == record and not r.exists("wa:wamid:wamid.X")


def claim(owner: str = "t1", now: float = NOW, take_over: bool = False) -> list[Any]:
    """The claim arguments: owner, now, stale_after, ttl, take_over_stale, node, heartbeat_timeout."""
    return [owner, now, 95, 3600, int(take_over), "node-a", 10]


@pytest.mark.parametrize(
    ("record", "beat_age", "take_over", "found"),
    [
        (None, 0, False, "claimed"),
        ({"state": "pending", "attempts": "2", "created": "1"}, 0, False, "claimed"),
        ({"state": "sent"}, 0, False, "sent"),
        ({"state": "failed"}, 0, False, "failed"),
        ({"state": "claimed", "node": "node-b", "since": str(NOW)}, 0, False, "busy"),  # owner alive
        ({"state": "claimed", "node": "node-b", "since": str(NOW)}, 60, False, "claimed"),  # owner gone
        ({"state": "sending", "node": "node-b", "since": str(NOW)}, 60, False, "stale"),
        ({"state": "sending", "node": "node-b", "since": str(NOW)}, 60, True, "claimed"),
        ({"state": "sending", "node": "node-b", "since": str(NOW - 100)}, 0, False, "stale"),  # too slow
    ],
)
def test_begin(r: redis.Redis, record: dict | None, beat_age: float, take_over: bool, found: str) -> None:
    r.hset("workers", "node-b", NOW - beat_age)
    if record:
        r.hset("rec", mapping=record)
    reply = run(r, "begin", ["rec", "workers"], claim(take_over=take_over))
    assert reply[0] == found
    if found == "claimed":
        assert r.hget("rec", "owner") == "t1" and r.hget("rec", "node") == "node-a"
        assert json.loads(reply[1]).get("attempts") == (record or {"attempts": "0"}).get("attempts")


def test_park_take_leases_due_intents_and_done_forgets_them(r: redis.Redis) -> None:
    keys = ["parked", "releasing", "messages"]
    r.zadd("parked", {"due": NOW - 1, "later": NOW + 60})
    r.zadd("releasing", {"orphan": NOW - 120})  # a dead pump's, past its lease
    r.hset("messages", mapping={"due": "m1", "later": "m2", "orphan": "m3"})
    taken = run(r, "park_take", keys, [NOW, 30, 10])
    assert dict(zip(taken[::2], taken[1::2], strict=True)) == {"due": "m1", "orphan": "m3"}
    assert r.zrange("parked", 0, -1) == ["later"] and set(r.zrange("releasing", 0, -1)) == {"due", "orphan"}
    assert run(r, "park_take", keys, [NOW, 30, 10]) == []  # leased: no second pump takes them
    r.zadd("parked", {"orphan": NOW + 5})  # parked again meanwhile: its message stays
    assert run(r, "park_done", keys, ["due", "orphan"]) == 2
    assert r.zrange("releasing", 0, -1) == [] and r.hgetall("messages") == {"later": "m2", "orphan": "m3"}


def test_slow_down_halves_the_rate_to_a_floor_and_holds_the_number(r: redis.Redis) -> None:
    assert float(run(r, "slow_down", ["num"], [2.0, 0.0, 0.3])) == 0.5
    assert float(run(r, "slow_down", ["num"], [2.0, 0.0, 0.3])) == 0.3  # not below the floor
    assert float(r.hget("num", "tat")) >= NOW + 1.9


def test_block_pair_blocks_on_the_servers_clock(r: redis.Redis) -> None:
    assert run(r, "block_pair", ["pair"], [6]) == 1
    assert abs(float(r.hget("pair", "blocked_until")) - (time.time() + 6)) < 1
    assert 60 < r.ttl("pair") <= 66


def kombu_payload(task_id: str) -> str:
    return json.dumps({"headers": {"id": task_id}, "body": ""})


def test_ledger_lost_finds_what_is_nowhere(r: redis.Redis) -> None:
    for task_id in ("queued", "held", "parked", "releasing", "lost", "young"):
        r.zadd("index", {task_id: NOW - (1 if task_id == "young" else 60)})
    r.lpush("q", kombu_payload("queued"), "not json")
    r.hset("unacked", "tag", json.dumps([json.loads(kombu_payload("held")), "", "q"]))
    r.zadd("parked", {"parked": NOW})
    r.zadd("releasing", {"releasing": NOW})
    keys = ["index", "q", "unacked", "parked", "releasing"]
    assert run(r, "ledger_lost", keys, [NOW - 10, 1]) == ["lost"]  # "young" is within the grace


LIMITS = [80.0, 6.0, 45, 10.0, 0.05, 30.0, 0.0, "new"]  # rate ... lane_rate, line (acquire.lua)


@pytest.mark.parametrize(
    ("breaker", "line_end", "verdict"),
    [  # times as seconds from now (the script reads the server's clock)
        (None, None, "ok"),
        ({"state": "open", "next_probe": 60}, None, "paused"),
        ({"state": "open", "next_probe": -1}, None, "probe"),  # one probe goes through
        ({"state": "open", "next_probe": -1, "manual": "1"}, None, "paused"),  # paused by hand
        (None, 60, "later"),  # a parked line: a new intent joins its end
    ],
)
def test_acquire_many(r: redis.Redis, breaker: dict | None, line_end: float | None, verdict: str) -> None:
    now = time.time()
    if breaker:
        r.hset("brk", mapping={**breaker, "next_probe": now + breaker["next_probe"]})
    if line_end:
        r.set("line", now + line_end)
    r.hset("rec", mapping={"state": "claimed", "owner": "task-1:a"})
    reply = run(r, "acquire_many", ["num", "brk", "", "line", "pair:a", "rec"], [*LIMITS, "task-1:a"])
    assert reply[0] == verdict
    assert (r.hget("rec", "state") == "sending") is (verdict in ("ok", "probe"))  # due now: marked


def test_acquire_gives_no_slot_for_a_record_that_is_another_deliverys(r: redis.Redis) -> None:
    r.hset("rec", mapping={"state": "claimed", "owner": "task-1:b"})  # taken over by delivery b
    reply = run(r, "acquire_many", ["num", "brk", "", "line", "pair:a", "rec"], [*LIMITS, "task-1:a"])
    assert reply == ["lost", "0", "0"]
    assert r.hget("rec", "state") == "claimed" and not r.exists("num")  # no slot was spent
    r.hset("rec", "state", "sent")
    assert (
        run(r, "acquire_many", ["num", "brk", "", "line", "pair:a", "rec"], [*LIMITS, "task-1:b"])[0]
        == "lost"
    )
    no_record = run(r, "acquire_many", ["num", "brk", "", "line", "pair:a", ""], [*LIMITS, ""])
    assert no_record[0] == "ok"  # a campaign's slots come without a record: marked later


@pytest.mark.parametrize(
    ("record", "age", "slot"),
    [(None, 0, True), ({"state": "sent"}, 0, False), ({"state": "pending", "created": "0"}, 0, False)],
)
def test_claim_slot_takes_a_slot_only_for_a_fresh_claim(
    r: redis.Redis, record: dict | None, age: float, slot: bool
) -> None:
    if record:
        r.hset("rec", mapping=record)
    keys = ["rec", "workers", "num", "brk", "", "line", "pair:a"]
    reply = run(r, "claim_slot", keys, [*claim(), 3600, *LIMITS])
    assert (len(reply) == 5) is slot
    if slot:
        assert reply[0] == "claimed" and reply[2] == "ok" and r.hget("rec", "state") == "sending"


def test_release_claim_deletes_only_our_own(r: redis.Redis) -> None:
    r.set("claim", "t1 abc")
    assert run(r, "release_claim", ["claim"], ["t2 abc"]) == 0 and r.get("claim") == "t1 abc"
    assert run(r, "release_claim", ["claim"], ["t1 abc"]) == 1 and r.get("claim") is None
