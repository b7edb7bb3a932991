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
    waits = [limiter.acquire(f"+9198765{i:05d}").wait for i in range(5)]
    spacing = 1 / (settings.rate_limit * (1 - settings.rate_headroom))  # 80/s at 97 %
    assert waits[0] == 0
    for before, after in pairwise(waits):
        assert abs(after - before - spacing) < 0.002


def test_beyond_the_horizon_an_intent_gets_a_place_in_the_parked_line(
    r: redis.Redis, settings: Settings
) -> None:
    limiter = RateLimiter(r, settings)
    spacing = 1 / (settings.rate_limit * (1 - settings.rate_headroom))
    slots = [limiter.acquire(f"+9198765{i:05d}") for i in range(100)]
    granted = [slot for slot in slots if slot.granted]
    # A thread sleeps DISPATCH_SLOT_MAX_AHEAD at most: 20 slots of 80/s, not 5 s of them.
    assert len(granted) == int(settings.slot_max_ahead / spacing) + 1
    line = [slot.wait for slot in slots if slot.verdict is Verdict.LATER]
    assert len(line) == 100 - len(granted)
    assert settings.slot_max_ahead < line[0] < settings.slot_max_ahead + 2 * spacing
    for before, after in pairwise(line):  # each its own place, at the number's rate
        assert abs(after - before - spacing) < 0.002
    # A new one, while the line exists, joins its end.
    assert abs(limiter.acquire(TO).wait - line[-1] - spacing) < 0.002
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
    limiter.set_lane("promo", 10.0)
    lane_slots = [limiter.acquire(f"+9198765{i:05d}", lane="promo") for i in range(5)]
    assert [s.verdict for s in lane_slots][:3] == [Verdict.OK] * 3
    assert any(s.verdict is Verdict.LATER for s in lane_slots)  # 10/s never reserves 0.25 s ahead
    # A transactional message is never behind more than the lane's horizon (DISPATCH_LANE_MAX_AHEAD).
    transactional = limiter.acquire(TO)
    assert transactional.verdict is Verdict.OK and transactional.wait <= settings.lane_max_ahead
