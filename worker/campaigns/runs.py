"""The Redis side of campaign runs: lanes, per-run counters (billable messages by category
among them) and the per-recipient report.

A run's report is a hash recipient -> JSON ({"status": "queued" | "skipped", ...}); written with
HSETNX, so a re-fired or resumed run counts each recipient once. Sent and failed counts are
tallied by the idempotency store when a recipient's send finishes (the run's counters hash
travels with each intent as data, see `tally_key`); the wamid or error of each recipient is
read back from its key's record, and its delivery status from the status webhooks' record
(`worker.statuses`), so statuses that arrive before the wamid is recorded are counted too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, cast

import redis
from pydantic import BaseModel, ConfigDict, Field

from worker.campaigns.spec import NAME_PATTERN
from worker.delivery.errors import Kind
from worker.delivery.optouts import LEGACY
from worker.delivery.send import Lane
from worker.scripts import load
from worker.statuses.events import DeliveryStatus, billing
from worker.statuses.tracker import StatusStore

OPTOUT = LEGACY  # opt-outs live in worker.delivery.optouts; the set of earlier versions, still read


def run_prefix(name: str, run_id: str) -> str:
    return f"wa:run:{name}:{run_id}"


class RunRef(BaseModel):
    """Which run an intent belongs to: the `campaign` argument of a recipient's `send_message`
    task, carried as data (never read out of an idempotency key, which apps choose too)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    run_id: str = Field(min_length=1, max_length=100)

    @property
    def lane(self) -> Lane:
        """The send path's view of the run: the campaign's lane, and the run's counters hash."""
        return Lane(name=self.name, tally=run_prefix(self.name, self.run_id) + ":counts", run_id=self.run_id)


class CampaignRuns:
    def __init__(self, client: redis.Redis, ttl: int, statuses: StatusStore) -> None:
        self.redis = client
        self.ttl = ttl
        self.statuses = statuses
        self._record = load("record_recipient").on(client)

    # --- runs -----------------------------------------------------------------------------------

    def start(self, name: str, run_id: str, total: int) -> bool:
        """Register a run; False when it was already started (a re-fired or resumed run)."""
        prefix = run_prefix(name, run_id)
        fresh = self.redis.hsetnx(prefix, "started", time.time())
        pipe = self.redis.pipeline()
        pipe.hset(prefix, mapping={"campaign": name, "run_id": run_id, "total": total})
        pipe.zadd(f"wa:runs:{name}", {run_id: time.time()}, nx=True)
        for key in (prefix, prefix + ":counts", prefix + ":report"):
            pipe.expire(key, self.ttl)
        pipe.execute()
        return bool(fresh)

    def claim_chunk(self, name: str, run_id: str, start: int) -> bool:
        """True the first time a run's chunk at `start` is enqueued (marker `queued:<time>`)."""
        return bool(
            self.redis.set(
                f"{run_prefix(name, run_id)}:chunk:{start}", f"queued:{time.time()}", nx=True, ex=self.ttl
            )
        )

    def chunk_started(self, name: str, run_id: str, start: int) -> None:
        self.redis.set(f"{run_prefix(name, run_id)}:chunk:{start}", "started", ex=self.ttl)

    def stalled_chunks(self, name: str, run_id: str, older_than: float) -> list[int]:
        """Chunks enqueued long ago that no worker ever started: their message was lost."""
        prefix = f"{run_prefix(name, run_id)}:chunk:"
        keys = cast(list[str], list(self.redis.scan_iter(prefix + "*", count=1000)))
        values = cast(list[str | None], self.redis.mget(keys) if keys else [])
        stalled = []
        for key, value in zip(keys, values, strict=True):
            if (
                value
                and value.startswith("queued:")
                and float(value.split(":", 1)[1]) < time.time() - older_than
            ):
                self.redis.set(key, f"queued:{time.time()}", ex=self.ttl)
                stalled.append(int(key.rsplit(":", 1)[1]))
        return sorted(stalled)

    def active_runs(self) -> list[tuple[str, str]]:
        """(campaign, run id) of recent runs that are not done."""
        found = []
        for key in cast(Iterator[str], self.redis.scan_iter("wa:runs:*", count=1000)):
            name = key.split(":", 2)[2]
            for run_id in cast(list[str], self.redis.zrevrange(key, 0, 4)):
                if not self.counts(name, run_id)["done"]:
                    found.append((name, run_id))
        return found

    def record(self, name: str, run_id: str, entries: dict[str, dict[str, Any]]) -> None:
        """Add recipients to the run's report (first write wins) and count them, in one round trip."""
        prefix = run_prefix(name, run_id)
        pipe = self.redis.pipeline(transaction=False)
        for to, entry in entries.items():
            self._record.queue(
                pipe, [prefix + ":report", prefix + ":counts"], [to, json.dumps(entry), entry["status"]]
            )
        pipe.expire(prefix + ":report", self.ttl)  # its recipients' numbers go with the run's records
        pipe.execute()

    def counts(self, name: str, run_id: str) -> dict[str, Any]:
        prefix = run_prefix(name, run_id)
        meta = cast(dict[str, str], self.redis.hgetall(prefix))
        counts = {k: int(v) for k, v in cast(dict[str, str], self.redis.hgetall(prefix + ":counts")).items()}
        failed_by_code = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("failed:")}
        # A message whose outcome nobody knows (its worker died mid-request) is not counted failed:
        # the tracker ties it back as sent once a status names it (worker.statuses.tracker).
        ambiguous = failed_by_code.pop(Kind.AMBIGUOUS.value, 0)
        # Counted once per wamid by the status webhooks' first pricing (worker.statuses.tracker).
        billable = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("billable:")}
        free = {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("free:")}
        total = int(meta.get("total", 0))
        room_at = counts.pop("daily_limit_until", 0)
        done = counts.get("sent", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
        return {
            "campaign": name,
            "run_id": run_id,
            "total": total,
            "queued": counts.get("queued", 0),
            "sent": counts.get("sent", 0),
            "failed": counts.get("failed", 0) - ambiguous,
            "ambiguous": ambiguous,
            "skipped": counts.get("skipped", 0),
            "failed_by_code": failed_by_code,
            "billable": dict(sorted(billable.items())),  # category -> messages Meta charges for
            "free": dict(sorted(free.items())),  # category -> priced messages Meta does not charge
            "done": total > 0 and done >= total,
            "started": float(meta["started"]) if meta.get("started") else None,
            # Sends waiting for room under the account's messaging limit (daily_limit), until when.
            "waiting_for_daily_limit_until": room_at if room_at > time.time() else None,
        }

    def delivery(self, name: str, run_id: str) -> dict[str, Any]:
        """What the status webhooks said of a run's messages: delivered (read included), read, and
        failed after sending (by code). Read from every recipient's record, so it costs one
        pipelined read per recipient."""
        rows = self.report(name, run_id)
        states = [r["delivery_status"] for r in rows]
        failed = [r for r in rows if r["delivery_status"] == DeliveryStatus.FAILED]
        by_code: dict[str, int] = {}
        for row in failed:
            code = str(row["delivery_error_code"])
            by_code[code] = by_code.get(code, 0) + 1
        return {
            "delivered": sum(s in (DeliveryStatus.DELIVERED, DeliveryStatus.READ) for s in states),
            "read": states.count(DeliveryStatus.READ),
            "undelivered": len(failed),
            "undelivered_by_code": by_code,
        }

    def runs(self, name: str) -> list[str]:
        return cast(list[str], self.redis.zrevrange(f"wa:runs:{name}", 0, -1))

    def report(self, name: str, run_id: str) -> list[dict[str, Any]]:
        """One row per recipient: status, wamid or error, reason for skips."""
        entries = self.redis.hgetall(run_prefix(name, run_id) + ":report")
        queued = [(to, json.loads(raw)) for to, raw in entries.items()]
        pipe = self.redis.pipeline()
        for _, entry in queued:
            pipe.hgetall("wa:idem:" + entry["key"]) if entry.get("key") else pipe.echo("")
        rows = []
        for (to, entry), record in zip(queued, pipe.execute(), strict=True):
            row = {
                "to": to,
                "status": entry["status"],
                "reason": entry.get("reason"),
                "task_id": entry.get("task_id"),
                "wamid": None,
                "error_code": None,
                "error": None,
                "delivery_status": None,
                "delivery_error_code": None,
                "pricing_category": None,
                "billable": None,
            }
            if isinstance(record, dict) and record.get("state") in ("sent", "failed"):
                row["status"] = record["state"]
                row["wamid"] = record.get("wamid") or None
                error = json.loads(record.get("error") or "{}")
                row["error_code"], row["error"] = error.get("code"), error.get("error")
                if error.get("kind") == Kind.AMBIGUOUS:  # until a status ties it back
                    row["status"] = Kind.AMBIGUOUS.value
            rows.append(row)
        sent = [r for r in rows if r["wamid"]]
        wamids = [r["wamid"] for r in sent]
        looked = zip(sent, self.statuses.lookup(wamids), self.statuses.pricing(wamids), strict=True)
        for row, fields, pricing in looked:
            row["delivery_status"] = fields["delivery_status"]
            row["delivery_error_code"] = (fields.get("delivery_error") or {}).get("code")
            if pricing:
                charged, category = billing(pricing)
                row["pricing_category"], row["billable"] = category.value, charged
        return sorted(rows, key=lambda r: r["to"])
