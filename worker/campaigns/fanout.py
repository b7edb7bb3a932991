"""A campaign run: the audience cut into chunks, each chunk's intents sent concurrently, one result each.

`start_run` registers the run and enqueues its first chunk of DISPATCH_CAMPAIGN_CHUNK recipients;
each chunk enqueues the next one, timed for when the campaign's lane will have slots for it
(never one giant task or message, and never a queue of long ETAs). A Redis marker per chunk
keeps a re-delivered chunk from starting a second chain. `send_chunk` turns its rows into intents
(bad rows, opt-outs and recipients outside the send window are reported as skipped, and the run
goes on), then sends them through the same `MessageDelivery` as single messages, on a per-process
thread pool: same idempotency keys (`campaign:NAME:RUN:TO`), same rate limits (in the campaign's lane), same
retries. Each recipient gets a Celery result under a task id derived from its key; an intent that
has to wait is handed to a `send_message` task with that id, its run passed as the `campaign`
argument.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from worker.campaigns.runs import CampaignRuns, RunRef
from worker.campaigns.schedule import run_id_now, stored
from worker.campaigns.spec import (
    BadRow,
    Campaign,
    CampaignError,
    in_window,
    intent_for,
    recipient_of,
    sample_intent,
)
from worker.delivery.errors import DispatchError, InvalidIntent
from worker.delivery.idempotency import Claim, State
from worker.delivery.optouts import blocks
from worker.delivery.ratelimit import Slot
from worker.delivery.send import MessageDelivery, Requeue, SenderServices, SendServices, claim_token
from worker.ops.logs import get_logger
from worker.process_local import process_local
from worker.settings import get_settings

log = get_logger("whatsapp_dispatch.fanout")
ChunkEnqueuer = Callable[..., Any]
# (intent with its campaign, task id, why it waits): a send_message task, or a place in the parked line
Requeuer = Callable[[dict[str, Any], str, Requeue], Any]


def recipient_task_id(idempotency_key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key))


@process_local
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(get_settings().campaign_threads, thread_name_prefix="campaign")


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


class Fanout:
    """Campaign runs on top of the send path: `send` delivers, `runs` keeps the run's state, and the
    two callables enqueue a chunk or hand one recipient back to the queue (the Celery side)."""

    def __init__(
        self, send: SendServices, runs: CampaignRuns, enqueue_chunk: ChunkEnqueuer, requeue: Requeuer
    ) -> None:
        self.send = send
        self.settings = send.settings
        self.runs = runs
        self.enqueue_chunk = enqueue_chunk
        self.requeue = requeue

    def start_run(self, name: str, run_id: str | None) -> dict[str, Any]:
        _campaigns.pop(name, None)
        campaign = _campaign(name)
        sender = self.send.sender(campaign.sender)
        try:  # a template that does not fit the synced registry refuses the run before any send
            sender.templates.check(sample_intent(campaign))
        except InvalidIntent as exc:
            log.error("campaign_refused", campaign=name, error=exc.message)
            raise
        run_id = run_id or run_id_now(campaign, datetime.now(UTC))
        fresh = self.runs.start(name, run_id, len(campaign.rows))
        share = sender.settings.rate_limit * (1 - self.settings.rate_headroom) * self.settings.campaign_share
        sender.limiter.set_lane(name, min(share, campaign.throttle or share))
        chunks = -(-len(campaign.rows) // self.settings.campaign_chunk)
        if chunks:
            self._chain(name, run_id, 0, 0.0)
        return {
            "campaign": name,
            "run_id": run_id,
            "total": len(campaign.rows),
            "chunks": chunks,
            "resumed": not fresh,
        }

    def _chain(self, name: str, run_id: str, start: int, countdown: float) -> None:
        """Enqueue the chunk starting at `start`, once per run whatever is re-delivered."""
        total = len(_campaign(name).rows)
        if start >= total or not self.runs.claim_chunk(name, run_id, start):
            return
        self.enqueue_chunk(
            name=name,
            run_id=run_id,
            start=start,
            stop=min(start + self.settings.campaign_chunk, total),
            countdown=countdown,
        )

    def resume_stalled(self) -> list[dict[str, Any]]:
        """Re-enqueue chunks whose message never reached a worker.

        A chunk's message lost in any way (a write Redis lost, a consumer that is not the project's
        transport) would silently end the chain, so beat runs this sweep.
        Sends stay exactly-once: a chunk sent twice finds its keys already sent.
        """
        resumed = []
        for name, run_id in self.runs.active_runs():
            total = len(_campaign(name).rows)
            for start in self.runs.stalled_chunks(name, run_id, older_than=self.settings.chunk_resume_after):
                stop = min(start + self.settings.campaign_chunk, total)
                self.enqueue_chunk(name=name, run_id=run_id, start=start, stop=stop, countdown=0.0)
                resumed.append({"campaign": name, "run_id": run_id, "start": start})
        return resumed

    def _expand(self, campaign: Campaign, run_id: str, start: int, stop: int) -> list[dict[str, Any]]:
        """Rows -> intents to send; every other row is reported as skipped with its reason."""
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
        opted = self.send.optouts.check(i["to"] for i in intents)
        chosen = []
        for intent in intents:
            found = opted.get(intent["to"])
            reason = blocks(found, None, campaign=True) if found else None
            if reason is None and not in_window(campaign, intent["to"], now):
                reason = "outside the send window"
            if reason:
                report[intent["to"]] = {"status": "skipped", "reason": reason}
                continue
            key = intent["idempotency_key"]
            report[intent["to"]] = {"status": "queued", "key": key, "task_id": recipient_task_id(key)}
            chosen.append(intent)
        self.runs.record(campaign.name, run_id, report)
        return chosen

    def _claim(self, owners: dict[str, str], campaign: Campaign, sender: SenderServices) -> dict[str, Claim]:
        """The chunk's keys claimed in one round trip, not one each. Not when its templates may
        have to wait for the account's messaging limit: that wait comes before the claim
        (MessageDelivery.wait_for_room), so a run held for hours does not age its records."""
        if campaign.message.get("type") == "template" and sender.reach.limit is not None:
            return {}
        return self.send.store.begin_many(owners, take_over_stale=self.settings.at_least_once)

    def _reserve(
        self, intents: list[dict[str, Any]], claims: dict[str, Claim], sender: SenderServices, lane: str
    ) -> dict[str, Slot]:
        """Slots in the lane for the chunk's claimed recipients, in one round trip. A slot too far
        ahead (LATER) is left for the recipient to ask again when its turn comes near."""
        keys = [key for key, claim in claims.items() if claim.state is State.CLAIMED]
        if not keys:
            return {}
        tos = {i["idempotency_key"]: i["to"] for i in intents}
        slots = sender.limiter.acquire_many([(tos[key], "") for key in keys], lane)
        return {key: slot for key, slot in zip(keys, slots, strict=True) if slot.granted}

    def send_chunk(self, app: Celery, name: str, run_id: str, start: int, stop: int) -> dict[str, int]:
        campaign = _campaign(name)
        self.runs.chunk_started(name, run_id, start)
        sender = self.send.sender(campaign.sender)
        lane_rate = sender.limiter.lane_rate(name) or sender.settings.rate_limit
        self._chain(name, run_id, stop, 0.9 * (stop - start) / lane_rate)  # due a little before its slots
        intents = self._expand(campaign, run_id, start, stop)
        run = RunRef(name=name, run_id=run_id)
        later = {"campaign": run.model_dump()}
        # This chunk's claim owners: a chunk delivered again (its worker lost) claims afresh.
        owners = {i["idempotency_key"]: claim_token(recipient_task_id(i["idempotency_key"])) for i in intents}
        claims = self._claim(owners, campaign, sender)
        slots = self._reserve(intents, claims, sender, run.lane.name)

        def deliver(intent: dict[str, Any]) -> str:
            key = intent["idempotency_key"]
            task_id = recipient_task_id(key)
            try:
                # Popped: a recipient listed twice must not send twice on one claim.
                claim, slot = claims.pop(key, None), slots.pop(key, None)
                result = MessageDelivery(
                    self.send,
                    intent,
                    task_id,
                    0,
                    run.lane,
                    claim=claim,
                    slot=slot,
                    optouts_checked=True,
                    owner=owners[key],
                ).run()
            except Requeue as requeue:
                self.requeue({**intent, **later}, task_id, requeue)
                return "requeued"
            except DispatchError as exc:
                app.backend.mark_as_failure(task_id, exc)
                return "failed"
            except Exception:
                log.exception("chunk_delivery_error", task_id=task_id)
                self.requeue({**intent, **later}, task_id, Requeue(1.0, DispatchError("chunk error", {})))
                return "requeued"
            if self.send.result_document is None:  # else stored with its record
                app.backend.store_result(task_id, result, "SUCCESS")
            return "sent"

        outcomes = list(_executor().map(deliver, intents))
        return {k: outcomes.count(k) for k in ("sent", "failed", "requeued")} | {
            "skipped": stop - start - len(intents)
        }
