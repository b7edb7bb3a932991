"""Meta's messaging limit per account: unique template recipients in a rolling 24 hours."""

from __future__ import annotations

import redis

from worker.delivery.reach import WINDOW, Reach

TALLY = "wa:run:promo:r1:counts"


def test_campaign_sends_wait_for_room_and_transactional_ones_go_first(r: redis.Redis) -> None:
    reach = Reach(r, "waba-1", limit=2)
    assert reach.admit("+919876500001", TALLY) == 0
    assert reach.admit("+919876500002", TALLY) == 0
    assert reach.admit("+919876500001", TALLY) == 0  # already in its 24 hours: costs nothing more
    waiting = reach.admit("+919876500003", TALLY)
    assert WINDOW - 5 < waiting <= WINDOW  # room frees when the first recipient leaves the window
    assert int(r.hget(TALLY, "daily_limit_until")) > 0  # the run says it waits, and until when
    assert reach.admit("+919876500004") == 0  # a transactional template: counted, sent at once
    assert reach.used() == 3


def test_without_a_limit_nothing_is_counted(r: redis.Redis) -> None:
    reach = Reach(r, "waba-1", limit=None)
    assert reach.admit("+919876500001", TALLY) == 0
    assert r.dbsize() == 0
