"""The loop every worker runs: beat, and (one worker at a time) put dead workers' messages back.

A node that stops beating for DISPATCH_HEARTBEAT_TIMEOUT is dead: its unacknowledged messages
(prefetched, waiting for a countdown, or in flight) go back to the head of their queues at once,
and a ledger audit follows DISPATCH_AUDIT_GRACE later for anything it took with it unrecorded.
A worker that leaves cleanly (warm shutdown) hands its messages back itself and triggers the
audit too. A live worker, however slow, is never robbed: only a silent heartbeat counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery
from redis.exceptions import LockError

from worker.ops import metrics
from worker.ops.logs import get_logger
from worker.recovery.ledger import Ledger
from worker.recovery.nodes import Registry
from worker.settings import Settings

log = get_logger("whatsapp_dispatch.recovery")

LOCK = "wa:recovery:lock"
AUDIT_DUE = "wa:recovery:audit_due"  # when the next ledger audit is due (unix time)


def unacked_keys(node: str) -> dict[str, str]:
    """Transport options that give a node its own unacknowledged set in the Redis broker."""
    return {
        "unacked_key": f"wa:unacked:{node}",
        "unacked_index_key": f"wa:unacked_index:{node}",
        "unacked_mutex_key": f"wa:unacked_mutex:{node}",
    }


class Recoverer:
    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        settings: Settings,
        node: str,
        republish: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.redis = client
        self.settings = settings
        self.node = node
        self.registry = Registry(client, settings.heartbeat_timeout)
        self.ledger = Ledger(client)
        self.republish = republish  # publish a lost ledgered task again; False when it settled meanwhile
        self.redis_broker = settings.redis_broker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the loop -------------------------------------------------------------------------------

    def start(self) -> None:
        self.registry.beat(self.node)
        self._thread = threading.Thread(target=self._run, name="wa-recoverer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A clean exit: this node's messages went back with the warm shutdown; audit for the rest."""
        self._stop.set()
        self.registry.leave(self.node)
        if self.redis_broker:
            self.redis.set(AUDIT_DUE, time.time() + self.settings.audit_grace)

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            try:
                self.tick()
            except Exception:
                log.warning("recovery_tick_failed", exc_info=True)

    def tick(self) -> None:
        self.registry.beat(self.node)
        # redis-py's Lock releases by compare-and-delete (one script): a tick that outlived the
        # lock never deletes the lock another node took since, so two nodes never recover at once.
        lock = self.redis.lock(LOCK, timeout=max(5, int(self.settings.heartbeat_timeout)))
        if not lock.acquire(blocking=False, token=self.node):
            return
        try:
            for node in self.registry.dead():
                self.recover(node)
            if self.redis_broker and self.audit_due():
                self.audit()
        finally:
            try:
                lock.release()
            except LockError:
                log.warning("recovery_lock_expired", node=self.node)

    # --- what it does ---------------------------------------------------------------------------

    def recover(self, node: str) -> None:
        restored = self.restore_unacked(node) if self.redis_broker else 0
        self.registry.leave(node)
        if self.redis_broker:
            self.redis.set(AUDIT_DUE, time.time() + self.settings.audit_grace)
        metrics.RECOVERY.labels("worker_lost").inc()
        metrics.RECOVERY.labels("restored").inc(restored)
        log.warning("worker_lost", node=node, restored=restored)

    def restore_unacked(self, node: str) -> int:
        """Put a dead node's unacknowledged messages back at the head of their queues, with kombu's
        own restore (so bindings and payloads are handled as kombu does)."""
        keys = unacked_keys(node)
        with self.app.connection_for_write(transport_options=keys) as conn:
            channel: Any = conn.default_channel
            client = channel.client
            tags = client.hkeys(keys["unacked_key"])
            for tag in tags:
                channel.qos.restore_by_tag(tag, client=client)
            client.delete(keys["unacked_index_key"], keys["unacked_mutex_key"])
        return len(tags)

    def audit_due(self) -> bool:
        due = self.redis.get(AUDIT_DUE)
        if due is not None:
            return float(due) <= time.time()
        self.redis.set(AUDIT_DUE, time.time() + self.settings.audit_interval)
        return False

    def audit(self) -> None:
        self.redis.set(AUDIT_DUE, time.time() + self.settings.audit_interval)
        held = [unacked_keys(node)["unacked_key"] for node in self.registry.alive()]
        lost = self.ledger.lost(time.time() - self.settings.audit_grace, held)
        republished = [task_id for task_id in lost if self.republish(task_id)]
        metrics.RECOVERY.labels("republished").inc(len(republished))
        log_at = log.warning if republished else log.info
        log_at("ledger_audit", lost=len(lost), republished=len(republished), task_ids=republished[:20])
