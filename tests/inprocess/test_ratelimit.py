"""The limiter script's verdicts, and the breaker it honours, with the production limits."""

from __future__ import annotations

from itertools import pairwise

import redis

from worker.delivery.breaker import Breaker
from worker.delivery.ratelimit import Line, RateLimiter, Verdict, number_key
from worker.settings import Settings

TO = "+919999595313"


def test_slots_are_spaced_at_the_reserved_rate(r: redis.Redis, settings: Settings) -> None:
    limiter = RateLimiter(r, settings)
    # One script call gives the slots five calls in a row would, without the time between calls
    # (milliseconds on a loaded machine) in the waits.
    waits = [slot.wait for slot in limiter.acquire_many([(f"+9198765{i:05d}", "") for i in range(5)])]
    spacing = 1 / (settings.rate_limit * (1 - settings.rate_headroom))  # 80/s at 97 %
    assert waits[0] == 0
    for before, after in pairwise(waits):
        assert abs(after - before - spacing) < 0.002


def test_beyond_the_horizon_an_intent_gets_a_place_in_the_parked_line(
    r: redis.Redis, settings: Settings
) -> None:
    limiter = RateLimiter(r, settings)
    spacing = 1 / (settings.rate_limit * (1 - settings.rate_headroom))
    slots = limiter.acquire_many([(f"+9198765{i:05d}", "") for i in range(100)])
    granted = [slot for slot in slots if slot.granted]
    # A thread sleeps DISPATCH_SLOT_MAX_AHEAD at most: 20 slots of 80/s, not 5 s of them.
    assert max(slot.wait for slot in granted) <= settings.slot_max_ahead
    assert len(granted) >= int(settings.slot_max_ahead / spacing)  # 19 or 20 as the float falls
    line = [slot.wait for slot in slots if slot.verdict is Verdict.LATER]
    assert len(line) == 100 - len(granted)
    assert settings.slot_max_ahead < line[0] < settings.slot_max_ahead + 2 * spacing
    for before, after in pairwise(line):  # each its own place, at the number's rate
        assert abs(after - before - spacing) < 0.002
    # A new one, while the line exists, joins its end (a later call: compared on the local clock).
    assert abs(limiter.acquire(TO).due - slots[-1].due - spacing) < spacing / 2
    # Once its time comes (here: the number's slots are free again), one that comes back from the
    # line takes a slot; a new one still queues behind the rest of the line.
    r.delete(number_key(settings.phone_number_id))
    assert limiter.acquire(TO, line=Line.RELEASED).verdict is Verdict.OK
    assert limiter.acquire("+919876500000").verdict is Verdict.LATER


def test_one_recipients_pair_limit_does_not_move_the_line(r: redis.Redis, settings: Settings) -> None:
    limiter = RateLimiter(r, settings)
    limiter.block_pair(TO, retry_after=60)
    blocked = limiter.acquire(TO)
    assert blocked.verdict is Verdict.LATER and 59 < blocked.wait <= 60
    assert limiter.acquire("+919876500000").verdict is Verdict.OK  # no line was made


def test_the_pair_limit_spaces_one_recipient_after_its_burst(r: redis.Redis, settings: Settings) -> None:
    # At the 1,000 msg/s tier, so the burst of 45 fits within the slot horizon.
    limiter = RateLimiter(r, settings.model_copy(update={"rate_limit": 1000.0}))
    slots = [limiter.acquire(TO) for _ in range(settings.pair_burst + 1)]
    assert all(slot.verdict is Verdict.OK for slot in slots[: settings.pair_burst])
    assert slots[-1].verdict is Verdict.LATER  # the 46th message to one number waits ~6 s
    limiter.block_pair("+919876500000", retry_after=30)
    assert limiter.acquire("+919876500000").verdict is Verdict.LATER


def test_a_throttle_halves_the_rate_and_holds_every_sender(r: redis.Redis, settings: Settings) -> None:
    limiter = RateLimiter(r, settings)
    assert limiter.slow_down(retry_after=1.0) == 0.5
    assert 0.9 < limiter.acquire(TO).wait <= 1.0


def test_an_open_breaker_pauses_and_lets_one_probe_through(r: redis.Redis, settings: Settings) -> None:
    limiter = RateLimiter(r, settings)
    breaker = Breaker(r, settings.phone_number_id, probe_interval=30)
    assert breaker.trip(190, "token expired") is True
    assert breaker.trip(190, "token expired") is False  # already open
    paused = limiter.acquire(TO)
    assert paused.verdict is Verdict.PAUSED and 29 < paused.wait <= 30
    r.hset(breaker.key, "next_probe", 0)  # the probe interval has passed
    # The paused intent waits in the number's line: a new one goes behind it, it takes the probe.
    assert limiter.acquire(TO).verdict is Verdict.LATER
    assert limiter.acquire(TO, line=Line.RELEASED).verdict is Verdict.PROBE
    assert limiter.acquire(TO, line=Line.RELEASED).verdict is Verdict.PAUSED  # one probe per interval
    assert breaker.close() is True and breaker.status() == {"state": "closed"}


def test_a_manual_pause_sends_no_probe(r: redis.Redis, settings: Settings) -> None:
    limiter = RateLimiter(r, settings)
    breaker = Breaker(r, settings.phone_number_id, probe_interval=30)
    breaker.pause("maintenance")
    r.hset(breaker.key, "next_probe", 0)
    assert limiter.acquire(TO).verdict is Verdict.PAUSED
    assert breaker.status()["message"] == "maintenance"


def test_a_lane_takes_its_own_rate_and_leaves_the_rest(r: redis.Redis, settings: Settings) -> None:
    limiter = RateLimiter(r, settings)
    limiter.set_lane("promo", 40.0)
    lane_slots = [limiter.acquire(f"+9198765{i:05d}", lane="promo") for i in range(10)]
    assert [s.verdict for s in lane_slots][:3] == [Verdict.OK] * 3
    # A lane reserves at most half the number's horizon (0.1 s of DISPATCH_LANE_MAX_AHEAD here)...
    assert limiter.lane_horizon == min(settings.lane_max_ahead, settings.slot_max_ahead / 2)
    assert max(s.wait for s in lane_slots if s.granted) <= limiter.lane_horizon
    assert any(s.verdict is Verdict.LATER for s in lane_slots)
    # ...so a transactional message behind a full lane still gets a slot, never a place in the
    # parked line (with a lane as far ahead as the number's own horizon it was parked, and could
    # lose its released slot to the lane again).
    transactional = limiter.acquire(TO)
    spacing = 1 / (settings.rate_limit * (1 - settings.rate_headroom))
    assert transactional.verdict is Verdict.OK
    assert transactional.wait <= limiter.lane_horizon + spacing < settings.slot_max_ahead


def test_a_chunks_slots_in_one_call_are_the_slots_of_calls_in_a_row(
    r: redis.Redis, settings: Settings
) -> None:
    limiter = RateLimiter(r, settings)
    limiter.set_lane("promo", 40.0)
    limiter.block_pair("+919876500002", 60)  # this recipient waits for its pair, alone
    recipients = [(f"+9198765{i:05d}", "") for i in range(15)]
    slots = limiter.acquire_many(recipients, lane="promo")
    lane_spacing = 1 / 40.0
    granted = [slot.wait for slot in slots if slot.granted]
    # The lane's horizon (0.1 s) holds 4 or 5 slots of 40/s; the blocked recipient is LATER
    # without taking one, and no slot is given twice.
    assert slots[2].verdict is Verdict.LATER and slots[2].wait > 59
    assert max(granted) <= limiter.lane_horizon
    assert len(granted) >= int(limiter.lane_horizon / lane_spacing)  # 4 or 5 as the float falls
    assert granted[0] == 0
    for before, after in pairwise(granted):
        assert abs(after - before - lane_spacing) < 0.002
    # The next caller, one at a time, comes after the chunk's last slot.
    last = max((slot for slot in slots if slot.granted), key=lambda slot: slot.due)
    assert limiter.acquire("+919876511111", lane="promo").due >= last.due + lane_spacing / 2
