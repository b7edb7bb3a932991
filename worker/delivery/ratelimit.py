"""Rate limits shared by every worker, kept in Redis and taken in one atomic Lua call per send.

Two limits from Meta's Cloud API "Throughput" and "Pair rate limits" docs:
- per sending phone number: DISPATCH_RATE_LIMIT messages/s (80 by default, up to 1,000 at
  Meta's top tier), spaced evenly (GCRA without burst), so no one-second window carries
  more than the limit plus one;
- per (business number, recipient) pair: one message per DISPATCH_PAIR_INTERVAL seconds with
  bursts of DISPATCH_PAIR_BURST (Meta: 1 per 6 s, bursts up to 45).

Slots are reserved at (1 - DISPATCH_RATE_HEADROOM) of the limit, so scheduling jitter between
the reservation and the request reaching Meta does not push a one-second window over it.
A caller reserves the next free slot and sleeps until it (no polling). A slot further away than
DISPATCH_SLOT_MAX_AHEAD is not reserved: the intent gets a place in its number's parked line and
waits in Redis, not in a thread (worker.delivery.parking).
The same call honours the account circuit breaker (worker.delivery.breaker) so a paused number
costs one round trip, and lets exactly one probe through when a probe is due.

When the API still throttles (4, 80007, 130429), `slow_down` halves the shared rate and stops
every worker for the Retry-After; the rate recovers by DISPATCH_RATE_RECOVERY per second.
A pair limit hit (131056) blocks only that recipient.

Campaign sends also take a slot in their campaign's lane: at most DISPATCH_CAMPAIGN_SHARE of the
number's rate (or the campaign's throttle), reserved at most DISPATCH_LANE_MAX_AHEAD seconds
ahead (at most half of DISPATCH_SLOT_MAX_AHEAD). Transactional messages have no lane, so they
always find a slot within their own horizon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from worker.scripts import load
from worker.settings import Settings


class Verdict(StrEnum):
    OK = "ok"  # sleep `wait` seconds, then send
    PROBE = "probe"  # the same, as the breaker's one probe: a success closes it
    LATER = "later"  # no slot within the horizon: park (or requeue) for `wait` seconds
    PAUSED = "paused"  # the breaker is open: park (or requeue) for `wait` seconds
    LOST = "lost"  # the idempotency record is no longer this delivery's: no slot, nothing sent


class Line(StrEnum):
    """An intent's place with respect to its number's parked line (worker.delivery.parking)."""

    NONE = "none"  # a campaign lane's intent: its fanout times it, it never parks
    NEW = "new"  # joins the end of the line while one exists
    RELEASED = "released"  # came back from the line: takes the next slot


@dataclass(frozen=True)
class Slot:
    verdict: Verdict
    wait: float  # seconds from `taken`
    marked_sending: bool = False
    taken: float = field(default_factory=time.monotonic)

    @property
    def due(self) -> float:
        """When to send, on the monotonic clock (a chunk's slots are used a while after they are taken)."""
        return self.taken + self.wait

    @property
    def granted(self) -> bool:
        return self.verdict in (Verdict.OK, Verdict.PROBE)


def slot(reply: list[str]) -> Slot:
    """A Slot from `acquire`'s reply (worker/scripts/parts/acquire.lua): verdict, wait, marked."""
    verdict, wait, *marked = reply
    return Slot(Verdict(verdict), float(wait), marked == ["1"])


LANES = "wa:lanes"  # lane name -> its rate in msg/s


def number_key(phone_number_id: str) -> str:
    return f"wa:rl:{phone_number_id}"


def breaker_key(phone_number_id: str) -> str:
    return f"wa:breaker:{phone_number_id}"


class RateLimiter:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.pnid = settings.phone_number_id
        self._lane_cache: dict[str, tuple[float, float]] = {}
        self._acquire = load("acquire_many").on(client)
        self._slow_down = load("slow_down").on(client)
        self._block_pair = load("block_pair").on(client)

    def pair_key(self, to: str) -> str:
        return f"{number_key(self.pnid)}:pair:{to}"

    def set_lane(self, name: str, rate: float) -> None:
        self.redis.hset(LANES, name, rate)

    @property
    def lane_horizon(self) -> float:
        """How far ahead a lane reserves: within half the number's horizon, so a campaign that
        fills its horizon leaves a transactional message a slot it need not be parked for."""
        return min(self.settings.lane_max_ahead, self.settings.slot_max_ahead / 2)

    def lane_rate(self, name: str) -> float:
        """A lane's rate (0 when unknown); cached for 10 s per process."""
        cached = self._lane_cache.get(name)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        rate = float(self.redis.hget(LANES, name) or 0)
        self._lane_cache[name] = (rate, time.monotonic() + 10)
        return rate

    def acquire(
        self, to: str, lane: str | None = None, record_key: str = "", line: Line = Line.NEW, owner: str = ""
    ) -> Slot:
        """A slot for one message to `to`. A bulk sender (a campaign run) passes its `lane`, whose
        rate is below the number's, leaving headroom for transactional messages, and which never
        reserves far ahead. With `record_key` (an idempotency record), a slot due now also marks
        the record `sending`. Without a lane, LATER and PAUSED give the intent a place in the
        number's parked line, `wait` seconds from now. `owner`: the delivery's claim token; a
        record that is no longer its own gets LOST."""
        return self.acquire_many([(to, record_key)], lane, line, owner)[0]

    def acquire_many(
        self,
        recipients: list[tuple[str, str]],
        lane: str | None = None,
        line: Line = Line.NEW,
        owner: str = "",
    ) -> list[Slot]:
        """`acquire` for each (to, record key) in turn, in one round trip."""
        keys = self.number_keys(lane)
        for to, record_key in recipients:
            keys += [self.pair_key(to), record_key]
        reply = self._acquire(keys, [*self.limits(lane, line), owner])
        return [slot(reply[i : i + 3]) for i in range(0, len(reply), 3)]

    def number_keys(self, lane: str | None) -> list[str]:
        """The number's keys of worker/scripts/parts/acquire.lua, before the recipients'."""
        lane_key = f"{number_key(self.pnid)}:lane:{lane}" if lane else ""
        return [number_key(self.pnid), breaker_key(self.pnid), lane_key, f"{number_key(self.pnid)}:park"]

    def limits(self, lane: str | None, line: Line) -> list[str | float]:
        """The limits of worker/scripts/parts/acquire.lua."""
        s = self.settings
        return [
            s.rate_limit * (1 - s.rate_headroom),
            s.pair_interval,
            s.pair_burst,
            self.lane_horizon if lane else s.slot_max_ahead,
            s.rate_recovery,
            s.breaker_probe_interval,
            self.lane_rate(lane) if lane else 0.0,
            Line.NONE if lane else line,
        ]

    def slow_down(self, retry_after: float | None) -> float:
        """Halve the shared rate and hold every worker for `retry_after`; returns the new factor."""
        pause = retry_after if retry_after is not None else 1.0
        return float(self._slow_down([number_key(self.pnid)], [pause, self.settings.rate_recovery, 0.05]))

    def block_pair(self, to: str, retry_after: float | None) -> None:
        self._block_pair([self.pair_key(to)], [max(retry_after or 0, self.settings.pair_interval)])
