"""A campaign run: the audience cut into chunks, each chunk's intents sent concurrently, one result each.

`start_run` registers the run and enqueues its first chunk of DISPATCH_CAMPAIGN_CHUNK recipients;
each chunk enqueues the next one, timed for when the campaign's lane will have slots for it
(never one giant task or message, and never a queue of long ETAs). A Redis marker per chunk
keeps a re-delivered chunk from starting a second chain. `send_chunk` turns its rows into intents (bad rows, opt-outs
and recipients outside the send window are reported as skipped, and the run goes on), then sends
them through the same `MessageDelivery` as single messages, on a per-process thread pool: same
idempotency keys (`campaign:NAME:RUN:TO`), same rate limits (in the campaign's lane), same
retries. Each recipient gets a Celery result under a task id derived from its key; an intent that
has to wait is handed to a `send_message` task with that id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from worker.campaigns import BadRow, Campaign, CampaignError, in_window, intent_for, recipient_of
from worker.delivery import MessageDelivery, Requeue, services
from worker.errors import DispatchError
from worker.logging import get_logger
from worker.process_local import process_local
from worker.scheduling import run_id_now, stored

log = get_logger("whatsapp_dispatch.fanout")
ChunkEnqueuer = Callable[..., Any]
Requeuer = Callable[[dict[str, Any], str, float], Any]


def recipient_task_id(idempotency_key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key))


@process_local
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(services().settings.campaign_threads, thread_name_prefix="campaign")


_campaigns: dict[str, tuple[float, Campaign]] = {}


def _campaign(name: str) -> Campaign:
    """The stored definition, parsed once per process every 10 s rather than once per chunk."""
    cached = _campaigns.get(name)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    campaign = stored(name)
    if campaign is None:
        raise CampaignError(f"no campaign named {name!r} is loaded (wa-dispatch campaign load FILE)")
    _campaigns[name] = (time.monotonic() + 10, campaign)
    return campaign


def start_run(name: str, run_id: str | None, enqueue_chunk: ChunkEnqueuer) -> dict[str, Any]:
    s = services()
    _campaigns.pop(name, None)
    campaign = _campaign(name)
    run_id = run_id or run_id_now(campaign, datetime.now(UTC))
    fresh = s.runs.start(name, run_id, len(campaign.rows))
    share = s.settings.rate_limit * (1 - s.settings.rate_headroom) * s.settings.campaign_share
    s.runs.set_lane(name, min(share, campaign.throttle or share))
    chunks = -(-len(campaign.rows) // s.settings.campaign_chunk)
    if chunks:
        _chain(name, run_id, 0, 0.0, enqueue_chunk)
    return {"campaign": name, "run_id": run_id, "total": len(campaign.rows), "chunks": chunks, "resumed": not fresh}


def _chain(name: str, run_id: str, start: int, countdown: float, enqueue_chunk: ChunkEnqueuer) -> None:
    """Enqueue the chunk starting at `start`, once per run whatever is re-delivered."""
    s = services()
    total = len(_campaign(name).rows)
    if start >= total or not s.runs.claim_chunk(name, run_id, start):
        return
    enqueue_chunk(name=name, run_id=run_id, start=start, stop=min(start + s.settings.campaign_chunk, total),
                  countdown=countdown)  # fmt: skip


def resume_stalled(enqueue_chunk: ChunkEnqueuer) -> list[dict[str, Any]]:
    """Re-enqueue chunks whose message never reached a worker.

    Kombu's Redis transport pops a message before recording it as unacknowledged; a worker killed
    in between loses it. For a campaign that would silently end the chain, so beat runs this sweep.
    Sends stay exactly-once: a chunk sent twice finds its keys already sent.
    """
    s = services()
    resumed = []
    for name, run_id in s.runs.active_runs():
        total = len(_campaign(name).rows)
        for start in s.runs.stalled_chunks(name, run_id, older_than=s.settings.chunk_resume_after):
            enqueue_chunk(name=name, run_id=run_id, start=start, stop=min(start + s.settings.campaign_chunk, total),
                          countdown=0.0)  # fmt: skip
            resumed.append({"campaign": name, "run_id": run_id, "start": start})
    return resumed


def _expand(campaign: Campaign, run_id: str, start: int, stop: int) -> list[dict[str, Any]]:
    """Rows -> intents to send; every other row is reported as skipped with its reason."""
    runs = services().runs
    now = datetime.now(UTC)
    report: dict[str, dict[str, Any]] = {}
    intents: list[dict[str, Any]] = []
    for number, row in enumerate(campaign.rows[start:stop], start=start + 1):
        try:
            intents.append(intent_for(campaign, row, run_id))
        except BadRow as exc:
            try:
                to = recipient_of(campaign, row)
            except BadRow:
                to = f"row {number}"
            report[to] = {"status": "skipped", "reason": f"row {number}: {exc}"}
    opted = runs.opted_out([i["to"] for i in intents])
    chosen = []
    for intent in intents:
        reason = "opted out" if intent["to"] in opted else None
        if reason is None and not in_window(campaign, intent["to"], now):
            reason = "outside the send window"
        if reason:
            report[intent["to"]] = {"status": "skipped", "reason": reason}
            continue
        key = intent["idempotency_key"]
        report[intent["to"]] = {"status": "queued", "key": key, "task_id": recipient_task_id(key)}
        chosen.append(intent)
    runs.record(campaign.name, run_id, report)
    return chosen


def send_chunk(app: Celery, name: str, run_id: str, start: int, stop: int, requeue: Requeuer,
               enqueue_chunk: ChunkEnqueuer) -> dict[str, int]:  # fmt: skip
    campaign = _campaign(name)
    services().runs.chunk_started(name, run_id, start)
    lane_rate = services().runs.lane_rate(name) or services().settings.rate_limit
    _chain(name, run_id, stop, 0.9 * (stop - start) / lane_rate, enqueue_chunk)  # due a little before its slots
    intents = _expand(campaign, run_id, start, stop)

    def deliver(intent: dict[str, Any]) -> str:
        task_id = recipient_task_id(intent["idempotency_key"])
        try:
            result = MessageDelivery(intent, task_id, requeues=0).run()
        except Requeue as later:
            requeue(intent, task_id, later.countdown)
            return "requeued"
        except DispatchError as exc:
            app.backend.mark_as_failure(task_id, exc)
            return "failed"
        except Exception:  # noqa: BLE001 - never let one recipient's surprise drop the rest of the chunk
            log.exception("chunk_delivery_error", task_id=task_id)
            requeue(intent, task_id, 1.0)
            return "requeued"
        app.backend.store_result(task_id, result, "SUCCESS")
        return "sent"

    outcomes = list(_executor().map(deliver, intents))
    return {k: outcomes.count(k) for k in ("sent", "failed", "requeued")} | {"skipped": stop - start - len(intents)}
