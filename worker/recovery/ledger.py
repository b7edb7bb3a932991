"""The intent ledger: every task published through this app, from publish until it settles.

A second net: the project's Redis transport takes a message and records it as unacknowledged in
one step (worker.broker), so its fetch no longer loses one, as kombu's BRPOP-then-record did; the
ledger still catches a task that is nowhere for any other reason (a consumer that is not this
transport, a write Redis lost). It knows every task that should exist; `lost` finds those that
are nowhere (in no queue, and unacknowledged by no worker) so the recoverer can publish them
again under the same task id.
Sends stay exactly-once: a task that runs twice finds its idempotency key already claimed or sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from redis.client import Pipeline

from worker.broker import before_publish
from worker.delivery.parking import PARKED, RELEASING
from worker.redis_conn import group_of
from worker.scripts import load

ENTRIES = "wa:ledger"  # task id -> JSON entry
INDEX = "wa:ledger:index"  # task id -> time it was (re)published
QUEUES = "wa:ledger:queues"  # every queue a ledgered task was sent to


def queue_lists(queue: str) -> list[str]:
    """The Redis lists a queue's messages wait in: kombu keeps a message published with a
    `priority` in a list of its own per priority step (`whatsapp\x06\x163`, ...)."""
    return [queue, *(f"{queue}{RedisChannel.sep}{step}" for step in PRIORITY_STEPS if step)]


@dataclass(frozen=True)
class LedgerEntry:
    task: str
    kwargs: dict[str, Any]
    queue: str
    eta: float | None  # unix time before which it must not run (a countdown), or None
    priority: int | None = None  # as published, so a republished task keeps it


class Ledger:
    def __init__(self, client: redis.Redis, beside_broker: bool = False) -> None:
        """`beside_broker`: the broker is this same Redis, so a record can go with its publish."""
        self.redis = client
        self.beside_broker = beside_broker
        self._lost = load("ledger_lost").on(client)
        self._batch = threading.local()

    def record(self, task_id: str, entry: LedgerEntry) -> None:
        batch = getattr(self._batch, "pipe", None)
        pipe = batch if batch is not None else self.redis.pipeline(transaction=False)
        self._write(pipe, task_id, entry)
        if batch is None:
            pipe.execute()

    @contextmanager
    def recording(self, task_id: str, entry: LedgerEntry) -> Iterator[None]:
        """Around the task's publish: the record is written in the publish's own transaction when
        the broker is this Redis (worker.broker.before_publish), else just before it."""
        if not self.beside_broker or getattr(self._batch, "pipe", None) is not None:
            self.record(task_id, entry)
            yield
            return
        with before_publish(lambda pipe: self._write(pipe, task_id, entry)):
            yield

    @staticmethod
    def _write(pipe: Pipeline, task_id: str, entry: LedgerEntry) -> None:
        pipe.hset(ENTRIES, task_id, json.dumps(entry.__dict__))
        pipe.zadd(INDEX, {task_id: time.time()})
        pipe.sadd(QUEUES, entry.queue)

    @contextmanager
    def batched(self) -> Iterator[None]:
        """What this thread records inside the block is written in one round trip as it ends (the
        HTTP API's batches); nothing is written when it raises. Publish the tasks after it ends."""
        self._batch.pipe = self.redis.pipeline(transaction=False)
        try:
            yield
            self._batch.pipe.execute()
        finally:
            del self._batch.pipe

    def watch(self, queue: str) -> None:
        """Look for ledgered tasks in this queue too."""
        self.redis.sadd(QUEUES, queue)

    def settle(self, task_id: str, via: redis.Redis | None = None) -> None:
        """Called by every pool thread as its task ends, `via` the worker's own client: grouped
        with the other threads' writes (the send's outcome among them) into shared round trips."""

        def build(pipe: Pipeline) -> None:
            pipe.hdel(ENTRIES, task_id)
            pipe.zrem(INDEX, task_id)

        group_of(via or self.redis).execute(build)

    def entry(self, task_id: str) -> LedgerEntry | None:
        raw = cast(str | None, self.redis.hget(ENTRIES, task_id))
        return LedgerEntry(**json.loads(raw)) if raw else None

    def queues(self) -> list[str]:
        return sorted(cast(set[str], self.redis.smembers(QUEUES)))

    def lost(self, published_before: float, unacked_keys: list[str]) -> list[str]:
        """Task ids published before that time that are in no queue (nor a priority list of one)
        and held by no worker."""
        queues = [key for queue in self.queues() for key in queue_lists(queue)]
        keys = [INDEX, *queues, *unacked_keys, PARKED, RELEASING]
        return cast(list[str], self._lost(keys, [published_before, len(queues)]))
