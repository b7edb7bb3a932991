"""The parked line: intents kept in Redis until due, published back once, never lost to a dead pump."""

from __future__ import annotations

import time

import redis

from worker.delivery.idempotency import StoredResult
from worker.delivery.parking import PARKED, RELEASE_LEASE, RELEASING, Parked, ParkingLot, Pump
from worker.recovery.ledger import Ledger, LedgerEntry

INTENT = {"to": "+919999595313", "type": "text", "text": {"body": "hi"}}


def parked(retries: int = 1) -> Parked:
    return Parked("worker.tasks.send_message", INTENT, retries)


def test_due_intents_are_published_once_in_due_order(r: redis.Redis) -> None:
    lot = ParkingLot(r)
    now = time.time()
    lot.park("later", now + 60, parked())
    lot.park("second", now - 1, parked(2))
    lot.park("first", now - 2, parked())
    published: list[tuple[str, Parked]] = []
    pump = Pump(lot, published.extend, time.time)
    assert pump.pump() == 2
    assert published == [("first", parked()), ("second", parked(2))]
    assert pump.pump() == 0  # taken once, whichever worker's pump looks next
    assert r.zcard(PARKED) == 1 and r.zcard(RELEASING) == 0


def test_parking_again_under_the_same_id_keeps_one_copy(r: redis.Redis) -> None:
    lot = ParkingLot(r)
    lot.park("twice", time.time() + 30, parked())
    lot.park("twice", time.time() - 1, parked(3))  # a re-delivered message parked a second time
    assert lot.take(time.time()) == [("twice", parked(3))]


def test_an_intent_parked_again_before_its_release_is_done_stays_parked(r: redis.Redis) -> None:
    lot = ParkingLot(r)
    lot.park("quick", time.time() - 1, parked())
    [(task_id, _)] = lot.take(time.time())
    lot.park(task_id, time.time() - 1, parked(2))  # released, ran, no slot yet: parked again
    lot.done([task_id])  # the pump that published it finishes only now
    assert lot.take(time.time()) == [("quick", parked(2))]


def test_what_a_dead_pump_took_is_parked_again_after_the_lease(r: redis.Redis) -> None:
    lot = ParkingLot(r)
    lot.park("orphan", time.time() - 1, parked())
    assert [task_id for task_id, _ in lot.take(time.time())] == ["orphan"]  # then the pump died
    assert lot.take(time.time()) == []  # another pump does not take it while the lease runs
    later = time.time() + RELEASE_LEASE + 1
    assert [task_id for task_id, _ in lot.take(later)] == ["orphan"]


def test_the_ledger_audit_counts_parked_intents_as_present(r: redis.Redis) -> None:
    ledger, lot = Ledger(r), ParkingLot(r)
    for task_id in ("parked", "releasing", "lost"):
        ledger.record(task_id, LedgerEntry("worker.tasks.send_message", INTENT, "whatsapp", None))
    lot.park("parked", time.time() + 60, parked())
    lot.park("releasing", time.time() - 1, parked())
    lot.take(time.time())
    assert ledger.lost(time.time() + 1, []) == ["lost"]


def test_a_parked_intents_retry_state_is_written_and_published_with_it(r: redis.Redis) -> None:
    listener = r.pubsub()
    listener.subscribe("celery-task-meta-t-1")
    listener.get_message(timeout=1)  # the subscription itself
    document = StoredResult("celery-task-meta-t-1", '{"status": "RETRY"}', 600)
    ParkingLot(r).park("t-1", time.time() + 30, parked(), document)
    assert (
        r.get("celery-task-meta-t-1") == '{"status": "RETRY"}' and 590 < r.ttl("celery-task-meta-t-1") <= 600
    )
    assert r.zscore(PARKED, "t-1") is not None
    message = listener.get_message(timeout=1)
    assert message is not None and message["data"] == '{"status": "RETRY"}'  # an AsyncResult.get() wakes
    listener.close()
