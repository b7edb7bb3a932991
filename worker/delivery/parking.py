"""Intents waiting for their sender's turn, kept in Redis rather than in a worker thread.

A worker thread sleeps for a slot only when it is due within DISPATCH_SLOT_MAX_AHEAD, so a
number can hold at most its rate times that many threads; a slow sender's backlog cannot take
the threads a fast one needs. An intent further back is parked: its message is acknowledged
(state RETRY) and the intent waits in a sorted set, due at the time the rate limiter gave it in
its sender's parked line (`wa:rl:<number>:park`, spaced at the sender's rate, so a backlog of
20,000 comes back at the rate it can be sent, not all at once). Every worker runs a `Pump` that
publishes due intents to the queue workers read first (`whatsapp.released`), under their own
task id, marked as released: a released intent takes the next slot, while a new one joins the
end of the line as long as a line exists.

Crash safety: an intent is parked before its message is acknowledged (a crash in between leaves
both; the second delivery parks it again under the same id); a pump moves what it publishes to
`wa:parked:releasing` first and deletes it after the publish, and what a dead pump left there
for RELEASE_LEASE seconds is parked again. A duplicate publish is harmless: the idempotency
record sends each intent once. The intent ledger counts parked intents as present.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from worker.delivery.idempotency import StoredResult
from worker.ops.logs import get_logger
from worker.scripts import load

log = get_logger("whatsapp_dispatch.parking")

PARKED = "wa:parked"  # task id -> when it is due (unix time)
MESSAGES = "wa:parked:messages"  # task id -> JSON Parked
RELEASING = "wa:parked:releasing"  # task id -> when a pump took it
RELEASED_HEADER = "wa_released"  # message header of a published parked intent: it takes a slot
RELEASE_LEASE = 30.0  # a pump that has not published within this long is presumed dead
PUMP_INTERVAL = 0.05  # seconds between a pump's looks at the due intents
PUMP_BATCH = 500


@dataclass(frozen=True)
class Parked:
    """What it takes to publish a parked intent again."""

    task: str
    kwargs: dict[str, Any]
    retries: int
    enqueued_at: float | None = None  # its first publish (unix time), published again as a header


class ParkingLot:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._take = load("park_take").on(client)
        self._done = load("park_done").on(client)

    def park(self, task_id: str, due: float, parked: Parked, result: StoredResult | None = None) -> None:
        """`result`: the task's RETRY state, written with it (one round trip instead of two)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(MESSAGES, task_id, json.dumps(asdict(parked)))
        pipe.zadd(PARKED, {task_id: due})
        if result:
            result.write(pipe)
        pipe.execute()

    def take(self, now: float, limit: int = PUMP_BATCH) -> list[tuple[str, Parked]]:
        """The intents due by `now`, moved to the releasing set (publish them, then `done`)."""
        flat = cast(list[str], self._take([PARKED, RELEASING, MESSAGES], [now, RELEASE_LEASE, limit]))
        return [(flat[i], Parked(**json.loads(flat[i + 1]))) for i in range(0, len(flat), 2)]

    def done(self, task_ids: list[str]) -> None:
        self._done([PARKED, RELEASING, MESSAGES], list(task_ids))


Publish = Callable[[list[tuple[str, Parked]]], None]


class Pump:
    """A thread in every worker: due parked intents back to their queues (see the module doc)."""

    def __init__(
        self, lot: ParkingLot, publish: Publish, clock: Callable[[], float], lead: float = 0.0
    ) -> None:
        self.lot = lot
        self.publish = publish
        self.clock = clock
        # Published this long before due, so a slot is not missed by the trip through the queue
        # (the intent then sleeps the rest in its thread, within DISPATCH_SLOT_MAX_AHEAD).
        self.lead = lead
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wa-parking-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(PUMP_INTERVAL):
            try:
                while self.pump() == PUMP_BATCH:
                    pass
            except Exception:
                log.warning("parking_pump_failed", exc_info=True)

    def pump(self) -> int:
        """Publish what is due now; returns how many."""
        taken = self.lot.take(self.clock() + self.lead)
        if taken:
            self.publish(taken)
            self.lot.done([task_id for task_id, _ in taken])
        return len(taken)
