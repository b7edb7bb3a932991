"""The loop a worker runs beside its pool: take inbox entries, apply them, acknowledge them.

An entry is acknowledged (and deleted) only after it was applied, so a worker killed mid-batch
leaves its entries pending, and another worker reclaims them (`Inbox.reclaim`). Applying is
idempotent, so a batch applied twice changes nothing; what it recorded but never told the app is
re-told here by whichever worker's loop finds its lease ended (`Applier.retell`).
"""

from __future__ import annotations

import threading
import time

from redis.exceptions import RedisError

from worker.ops.logs import get_logger
from worker.statuses.apply import Applier
from worker.statuses.inbox import Inbox

log = get_logger("whatsapp_dispatch.statuses")

BATCH = 500
BLOCK_MS = 1000  # how long one read waits for new entries; also how soon a stop is noticed
RECLAIM_EVERY = 10.0  # seconds between looks for a dead worker's entries
RETELL_EVERY = 5.0  # seconds between looks for changes recorded and never told


def consume(inbox: Inbox, applier: Applier, stop: threading.Event) -> None:
    """Run until `stop` is set; Redis going away pauses the loop, it never ends it."""
    ready = False
    next_reclaim = next_retell = 0.0
    while not stop.is_set():
        try:
            if not ready:
                inbox.ensure_group()
                ready = True
            entries = []
            if time.monotonic() >= next_reclaim:
                entries = inbox.reclaim(BATCH)
                next_reclaim = time.monotonic() + RECLAIM_EVERY
            entries = entries or inbox.read(BATCH, BLOCK_MS)
            if entries:
                applier.apply(entries)
                inbox.done([entry_id for entry_id, _ in entries])
            if time.monotonic() >= next_retell:
                next_retell = time.monotonic() + RETELL_EVERY
                applier.retell(time.time())
        except RedisError as exc:
            ready = False
            log.warning("webhook_inbox_unavailable", error=str(exc))
            stop.wait(1.0)
        except Exception:
            log.exception("webhook_apply_error")
            stop.wait(1.0)
