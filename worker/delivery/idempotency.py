"""One Redis record per idempotency key, so no intent is sent twice.

States: `pending` (known not sent, safe to send), `claimed` (a worker owns the key and has
not called the API yet), `sending` (a request is on its way; set just before each HTTP
attempt), `sent` (wamid kept), `failed` (final error kept). The claim is one Lua script, so
two workers can never both own a key.

A claim names its owner's node (worker process). While that node's heartbeat is fresh the key
is busy, however slow the send: a live worker is never robbed. Once the node stops beating the
claim is stale at once: a `claimed` record (the worker died before calling the API) is safely
claimed again; a `sending` one means it died mid-request, so the outcome is unknown, which the
caller treats as ambiguous. A `claimed` record left by an earlier delivery of the same task is
claimed again at once (a Redis restart can drop a message from a live worker's memory after its
claim: before, its next delivery waited out the backstop, about 95 s). `stale_after` (longer than
any send can take) is only a backstop for a claim whose live node lost track of it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from worker.redis_conn import group_of
from worker.scripts import load

PREFIX = "wa:idem:"
# The dead letters (worker.delivery.deadletters, which builds on this module): an ambiguous outcome
# writes its own in the step that keeps it.
DEAD_ENTRIES = "wa:dead"
DEAD_INDEX = "wa:dead:index"
# wamid -> the intent it came from (key, task id, campaign run, the intent itself), so a delivery
# status that arrives by webhook can be tied back to it (see worker.statuses).
WAMID_PREFIX = "wa:wamid:"


@dataclass(frozen=True)
class StoredResult:
    """A task's result document as its Redis result backend keeps it (key, encoded, expiry)."""

    key: str
    document: str
    ttl: int | None  # seconds (result_expires); None keeps it

    def write(self, pipe: redis.client.Pipeline) -> None:
        """Store it as the backend would, and publish it: what a waiting AsyncResult.get() listens for."""
        pipe.set(self.key, self.document, ex=self.ttl or None)
        pipe.publish(self.key, self.document)


class State(StrEnum):
    """A record's state, and (BUSY, STALE) what `begin` found when it could not claim."""

    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BUSY = "busy"
    STALE = "stale"


@dataclass(frozen=True)
class Claim:
    """What `begin` found: `claimed` (go ahead), `sent`, `failed`, `busy` (another worker) or `stale`."""

    state: State
    record: dict[str, Any]

    @property
    def attempts(self) -> int:
        return int(self.record.get("attempts") or 0)

    @property
    def created(self) -> float:
        return float(self.record.get("created") or time.time())

    @property
    def error(self) -> dict[str, Any]:
        return json.loads(self.record.get("error") or "{}")


def claim_of(reply: list[str]) -> Claim:
    """A Claim from `begin`'s reply (worker/scripts/parts/begin.lua): state, record."""
    state, raw = reply
    return Claim(State(state), json.loads(raw) if raw != "{}" else {})


@dataclass(frozen=True)
class RecordWrite:
    """An outcome's writes, made in one MULTI/EXEC: the record's fields; `counters` added to the
    `tally` hash (a campaign run's) when there is one; the wamid index (its key, its fields);
    the task's result document."""

    fields: dict[str, str | float]
    tally: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    index: tuple[str, dict[str, str]] | None = None
    result: StoredResult | None = None
    dropped: tuple[str, ...] = ()  # record fields removed


class IdempotencyStore:
    def __init__(
        self,
        client: redis.Redis,
        ttl: int,
        stale_after: float,
        liveness: tuple[str, str, float],
        dead_ttl: int | None = None,
    ) -> None:
        """`liveness`: the heartbeats hash, this process's node in it, and the heartbeat timeout;
        `dead_ttl`: the dead letters' (an ambiguous outcome writes its own), `ttl` by default."""
        self.redis = client
        self.dead_ttl = dead_ttl or ttl
        self.group = group_of(client)
        self.ttl = ttl
        self.stale_after = stale_after
        self.workers, self.node, self.heartbeat_timeout = liveness
        self._begin = load("begin").on(client)
        self._owned_write = load("owned_write").on(client)
        self._ambiguous = load("fail_ambiguous").on(client)

    def begin(self, key: str, owner: str, take_over_stale: bool = False) -> Claim:
        """Claim `key` for sending. A stale `sending` record is reported, or with `take_over_stale`
        (at-least-once mode) claimed again."""
        reply = self._begin([PREFIX + key, self.workers], self.begin_args(owner, take_over_stale))
        return claim_of(reply)

    def begin_many(self, owners: dict[str, str], take_over_stale: bool = False) -> dict[str, Claim]:
        """`begin` for many keys (key -> owner) in one round trip: a campaign chunk's recipients."""

        def build(pipe: Pipeline) -> None:
            for key, owner in owners.items():
                args = self.begin_args(owner, take_over_stale)
                self._begin.batch(pipe, [PREFIX + key, self.workers], args)

        replies = self.group.execute(build)
        return {key: claim_of(reply) for key, reply in zip(owners, replies, strict=True)}

    def begin_args(self, owner: str, take_over_stale: bool) -> list[str | float]:
        """The claim arguments of worker/scripts/parts/begin.lua."""
        return [
            owner,
            time.time(),
            self.stale_after,
            self.ttl,
            int(take_over_stale),
            self.node,
            self.heartbeat_timeout,
        ]

    def sending(self, key: str, owner: str) -> bool:
        """A request is about to leave: from now on a lost worker makes the outcome ambiguous. The
        fence of a send: with DISPATCH_REPLICA_ACKS it returns once the replicas have it (and the
        claim before it), so a failover cannot forget that the request may have left. False
        (nothing written, nothing to send) when the key is no longer `owner`'s: its claim was taken
        over while this delivery could not reach Redis."""
        args = [owner, "state", State.SENDING, "since", time.time()]
        written = self.group.execute(
            lambda pipe: self._owned_write.batch(pipe, [PREFIX + key], args), durable=True
        )
        return bool(written[0])

    def release(self, key: str, attempts: int, owner: str) -> bool:
        """Back to `pending`: the API definitely did not accept it, a later delivery may send. Only
        while the key is `owner`'s: a claim taken over is the other delivery's to move."""
        return bool(self._owned_write([PREFIX + key], [owner, "state", State.PENDING, "attempts", attempts]))

    def sent(
        self,
        key: str,
        *,
        attempts: int,
        wamid: str,
        wa_id: str | None,
        to: str,
        tally: str | None = None,
        origin: dict[str, str] | None = None,
        result: StoredResult | None = None,
    ) -> None:
        """Keep the wamid, and index it to `origin` (what the intent was); `tally` names a counters
        hash (a campaign run's) to count it in; `result` is the task's result document, written
        (and published) in the same transaction."""
        fields: dict[str, str | float] = {
            "state": State.SENT,
            "attempts": attempts,
            "wamid": wamid,
            "wa_id": wa_id or "",
            "to": to,
        }
        index = {"key": key, "to": to, "attempts": str(attempts), **(origin or {})}
        write = RecordWrite(
            {**fields, "finished": time.time()},
            tally=tally,
            counters={"sent": 1},
            index=(WAMID_PREFIX + wamid, index),
            result=result,
        )
        self._write(key, write)

    def failed(self, key: str, attempts: int, error: dict[str, Any], tally: str | None = None) -> None:
        fields: dict[str, str | float] = {
            "state": State.FAILED,
            "attempts": attempts,
            "error": json.dumps(error),
            "finished": time.time(),
        }
        counters = {"failed": 1, f"failed:{error.get('code') or error.get('kind')}": 1}
        # A definite failure: what an ambiguous one kept for the tracker goes (parts/tracked.lua).
        dropped = ("origin", "tally", "echoed", "echoed_wa_id")
        self._write(key, RecordWrite(fields, tally=tally, counters=counters, dropped=dropped))

    def ambiguous(
        self,
        key: str,
        attempts: int,
        error: dict[str, Any],
        origin: dict[str, str],
        dead_letter: dict[str, Any],
        tally: str | None = None,
    ) -> tuple[str, str | None] | None:
        """Keep an ambiguous outcome (and its dead letter) with what a status needs to tie it back
        (`origin`, the wamid index's fields; the run's counters). (wamid, wa_id) instead when a
        status already named this key (the tracker): the API accepted it, and it is kept `sent`."""
        reply = self._ambiguous(
            [PREFIX + key, DEAD_ENTRIES, DEAD_INDEX],
            [
                key,
                attempts,
                json.dumps(error),
                time.time(),
                self.ttl,
                json.dumps(origin),
                tally or "",
                WAMID_PREFIX,
                json.dumps(dead_letter),
                self.dead_ttl,
            ],
        )
        if reply[0] == State.SENT:
            return reply[1], reply[2] or None
        return None

    def keep_result(self, result: StoredResult) -> None:
        """A task's result document alone (an outcome the tracker tied back)."""
        self.group.execute(result.write)

    def _write(self, key: str, write: RecordWrite) -> None:
        record: dict[FieldT, EncodableT] = dict(write.fields.items())

        def build(pipe: Pipeline) -> None:  # one MULTI/EXEC, in a round trip shared with other threads
            pipe.hset(PREFIX + key, mapping=record)
            if write.dropped:
                pipe.hdel(PREFIX + key, *write.dropped)
            pipe.expire(PREFIX + key, self.ttl)
            if write.index:
                index_key, index = write.index
                mapping: dict[FieldT, EncodableT] = dict(index.items())
                pipe.hset(index_key, mapping=mapping)
                pipe.expire(index_key, self.ttl)
            if write.tally:
                for counter, step in write.counters.items():
                    pipe.hincrby(write.tally, counter, step)
            if write.result:
                write.result.write(pipe)

        self.group.execute(build)
