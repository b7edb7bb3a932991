"""Enqueueing for the HTTP API, through the same task objects a Python app uses (validation at
enqueue, the ledger, masked logs), plus what HTTP adds: an idempotency key held in Redis before
the publish, so the same key twice answers the first task instead of making a second one.

Blocking (redis-py and kombu): the routes run it in a thread. Nothing here knows about HTTP
statuses; it says what happened to each intent (`Outcome`), and the routes answer from that.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis
from celery.result import denied_join_result
from celery.utils import uuid
from kombu.exceptions import BatchPublishError
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from worker.app import app
from worker.callbacks.deliver import KEY_PREFIX
from worker.delivery.errors import EnqueueError, InvalidIntent
from worker.delivery.senders import DEFAULT
from worker.redis_conn import get_enqueue_redis
from worker.scripts import load
from worker.services import ledger
from worker.settings import Settings
from worker.tasks import send_message
from worker.web.auth import ApiKey

IDEMPOTENCY_PREFIX = "wa:api:idem:"  # scoped key -> "task_id fingerprint", for DISPATCH_API_IDEMPOTENCY_TTL
# task id -> the sender its intent names, for as long as its result lasts (DISPATCH_RESULT_EXPIRES):
# a status read is answered only to a key that may use that sender.
SENDER_PREFIX = "wa:api:sender:"


class Unpublished(Exception):
    """A publish of a batch failed: nothing of the batch is written."""


class Outcome(StrEnum):
    """What became of one intent."""

    ACCEPTED = "accepted"  # published now
    DUPLICATE = "duplicate"  # its key was seen with the same intent: the first task answers
    CONFLICT = "conflict"  # its key was seen with another intent: nothing enqueued
    INVALID = "invalid"  # refused by validation: nothing enqueued
    FORBIDDEN = "forbidden"  # its sender is not one the API key may use
    NOT_ENQUEUED = "not_enqueued"  # the broker or Redis did not answer: nothing enqueued


@dataclass
class Item:
    """One intent on its way: the keyword arguments, and what became of them."""

    kwargs: dict[str, Any]
    outcome: Outcome | None = None
    task_id: str | None = None
    key: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    message: str | None = None
    api_key: str | None = None  # the name of the API key it came with (its status callbacks go there)

    @property
    def idempotency_key(self) -> str | None:
        return self.key or self.task_id

    @property
    def settled(self) -> Outcome:
        assert self.outcome is not None, "Enqueuer.enqueue settles every item"
        return self.outcome

    def refuse(self, outcome: Outcome, message: str, errors: list[dict[str, str]] | None = None) -> None:
        self.outcome, self.message, self.errors = outcome, message, errors or []


def fingerprint(kwargs: dict[str, Any]) -> str:
    """The same intent gives the same fingerprint whatever its keys' order."""
    canonical = json.dumps(kwargs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def prepare(raw: Any, header_key: str | None, api_key: ApiKey) -> Item:
    """An Item for one JSON value, refused already when it cannot be an intent, names a sender
    the API key may not use, or carries an idempotency key that differs from the header's. The
    idempotency key is the API key's own (`scoped`): another key's same text is another intent."""
    if not isinstance(raw, dict):
        item = Item({})
        item.refuse(Outcome.INVALID, "an intent is a JSON object", [_field("intent", "expected an object")])
        return item
    item = Item(dict(raw), api_key=api_key.name)
    if "campaign" in raw:  # a campaign run's own context (its counters): the worker's, never a client's
        reason = "set by the campaign runs of the deployment, never by a client"
        item.refuse(Outcome.INVALID, f"campaign: {reason}", [_field("campaign", reason)])
        return item
    body_key = raw.get("idempotency_key")
    if header_key is not None and body_key is not None and body_key != header_key:
        reason = "differs from the Idempotency-Key header; give one or the other"
        item.refuse(Outcome.INVALID, f"idempotency_key: {reason}", [_field("idempotency_key", reason)])
        return item
    sender = raw.get("sender")
    if not api_key.allows(sender if isinstance(sender, str) else None):
        item.refuse(Outcome.FORBIDDEN, f"this API key may not send as {sender or 'default'!r}")
        return item
    item.key = header_key if header_key is not None else body_key if isinstance(body_key, str) else None
    problem = _key_problem(item.key) if item.key is not None else None
    if problem:
        item.refuse(Outcome.INVALID, f"idempotency_key: {problem}", [_field("idempotency_key", problem)])
    elif item.key is not None:
        item.kwargs["idempotency_key"] = scoped(api_key.name, item.key)
    return item


MAX_KEY = 200  # the intent's own bound on idempotency_key


def _key_problem(key: str) -> str | None:
    if not key:
        return "must not be empty"
    if len(key) > MAX_KEY:
        return f"at most {MAX_KEY} characters"
    try:
        key.encode()  # a lone surrogate cannot be a Redis key
    except UnicodeEncodeError:
        return "must be text (UTF-8)"
    return None


def scoped(name: str, key: str) -> str:
    """The idempotency key as the deployment keeps it: `<API key name>:<key>`, so two apps' keys
    never meet (as Stripe scopes keys to the account); its SHA-256 when that would pass MAX_KEY."""
    full = f"{name}:{key}"
    return full if len(full) <= MAX_KEY else f"{name}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def unscoped(name: str, stored: Any) -> Any:
    """The key as API key `name` gave it, from what the deployment keeps (others' as kept)."""
    prefix = f"{name}:"
    if isinstance(stored, str) and stored.startswith(prefix) and not stored.startswith(f"{prefix}sha256:"):
        return stored[len(prefix) :]
    return stored


def _field(name: str, reason: str) -> dict[str, str]:
    return {"field": name, "reason": reason}


class Enqueuer:
    """Publishes prepared items; keyed ones are claimed in Redis first (SET NX, one round trip for
    a whole batch), and a claim is released when its publish fails, so a retry can go through."""

    def __init__(self, client: redis.Redis, ttl: int, sender_ttl: int) -> None:
        self.redis = client
        self.ttl = ttl
        self.sender_ttl = sender_ttl
        self._release = load("release_claim").on(client)

    def sender_of(self, task_id: str) -> str | None:
        """The sender of a task this process enqueued (None: not one of ours, or long gone)."""
        return cast(str | None, self.redis.get(SENDER_PREFIX + task_id))

    def record_sender(self, task_id: str, sender: Any) -> None:
        """For a task enqueued otherwise (a read receipt): its sender, before it is published."""
        self.redis.set(SENDER_PREFIX + task_id, _sender_name(sender), ex=self.sender_ttl)

    def enqueue(self, items: list[Item]) -> None:
        """Publish every item not yet refused, over one broker connection; sets each outcome.
        Intents are validated before any key is claimed: a claim is only ever held for an intent
        that will be published, so a second item with the same key (in this batch, or a request
        beside it) is refused as the first is, never answered as its duplicate."""
        todo = [item for item in items if item.outcome is None and _valid(item)]
        for item in todo:
            item.task_id = uuid()
        try:
            self._claim(todo)
        except RedisError as exc:
            for item in todo:
                item.refuse(
                    Outcome.NOT_ENQUEUED, f"not enqueued: Redis did not answer ({type(exc).__name__})"
                )
            return
        # The web process never waits for a result; without denied_join_result, Celery's Redis
        # backend subscribes to each task's result channel as it publishes (and unsubscribes when
        # the AsyncResult goes): two commands per intent, a third of a batch's time. The flag is
        # process-wide; a race between threads only leaves it set, which nothing here minds.
        with denied_join_result(), app.producer_or_acquire() as producer:
            pending = [item for item in todo if item.outcome is None]
            try:
                # The ledger's records are written (inner block) before the messages (outer); a
                # publish that fails leaves both blocks by an exception, so neither is written.
                with _batch(producer, len(pending)), _ledger_batch(len(pending)):
                    for index, item in enumerate(pending):
                        if not self._publish(item, producer):
                            self._give_up(pending[index + 1 :], item.message or "not enqueued")
                            raise Unpublished(item.message or "not enqueued")
            except Unpublished as exc:
                self._unpublished(pending, str(exc))
            except (BatchPublishError, RedisError) as exc:
                name = type(exc.__cause__ or exc).__name__
                self._unpublished(pending, f"not enqueued: the broker did not answer ({name})")

    def _publish(self, item: Item, producer: Any) -> bool:
        """False when the broker did not answer (so the rest of a batch is not tried)."""
        try:
            send_message.apply_async(kwargs=item.kwargs, task_id=item.task_id, producer=producer)
        except InvalidIntent as exc:
            item.refuse(Outcome.INVALID, str(exc), exc.errors)
            self._unclaim(item)
            item.task_id = None  # no task exists
            return True
        except EnqueueError as exc:
            item.refuse(Outcome.NOT_ENQUEUED, str(exc))
            self._unclaim(item)
            return False
        item.outcome = Outcome.ACCEPTED
        return True

    def _give_up(self, rest: list[Item], message: str) -> None:
        for item in rest:
            item.refuse(Outcome.NOT_ENQUEUED, message)
            self._unclaim(item)

    def _unpublished(self, items: list[Item], reason: str) -> None:
        """The batch's write to the ledger or the broker failed, or was given up: what it held was
        not enqueued, so its ledger entries are settled (nothing for the audit to publish) and its
        keys released."""
        book = ledger()
        for item in items:
            if item.outcome != Outcome.ACCEPTED:
                continue
            if book is not None:
                with suppress(RedisError):
                    book.settle(str(item.task_id))
            item.refuse(Outcome.NOT_ENQUEUED, reason)
            self._unclaim(item)

    def _claim(self, todo: list[Item]) -> None:
        """In one round trip: each keyed item's claim, and each item's sender."""
        if not todo:
            return
        keyed = [item for item in todo if item.key is not None]
        pipe = self.redis.pipeline(transaction=False)
        for item in keyed:
            claim = f"{item.task_id} {fingerprint(item.kwargs)}"
            pipe.set(_claim_key(item), claim, nx=True, ex=self.ttl)
        for item in todo:  # a duplicate's unused task id too: nobody knows it, it expires
            sender = _sender_name(item.kwargs.get("sender"))
            pipe.set(SENDER_PREFIX + str(item.task_id), sender, ex=self.sender_ttl)
            if item.api_key is not None:  # whose callback hears its statuses (worker.callbacks)
                pipe.set(KEY_PREFIX + str(item.task_id), item.api_key, ex=self.sender_ttl)
        claimed = pipe.execute()[: len(keyed)]
        taken = [item for item, ok in zip(keyed, claimed, strict=True) if not ok]
        if not taken:
            return
        held = self.redis.mget([_claim_key(item) for item in taken])
        for item, held_claim in zip(taken, cast(list[str | None], held), strict=True):
            self._seen(item, held_claim)

    def _seen(self, item: Item, claim: str | None) -> None:
        """An item whose key was claimed before: the first task when it is the same intent."""
        first, _, print_ = (claim or "").partition(" ")
        if not first:  # released between our SET and GET: the first publish failed
            item.refuse(Outcome.NOT_ENQUEUED, "an earlier request with this key failed; retry")
            return
        item.task_id = first
        if print_ == fingerprint(item.kwargs):
            item.outcome = Outcome.DUPLICATE
        else:
            item.refuse(Outcome.CONFLICT, f"idempotency key {item.key!r} was used for another intent")

    def _unclaim(self, item: Item) -> None:
        """An item that was not published: its sender record goes, and its key's claim."""
        with suppress(RedisError):
            self.redis.delete(SENDER_PREFIX + str(item.task_id), KEY_PREFIX + str(item.task_id))
            if item.key is not None:
                self._release([_claim_key(item)], [f"{item.task_id} {fingerprint(item.kwargs)}"])


def _claim_key(item: Item) -> str:
    return IDEMPOTENCY_PREFIX + str(item.kwargs["idempotency_key"])


def _valid(item: Item) -> bool:
    """False, with the item refused, for an intent the task would refuse."""
    try:
        send_message.check(item.kwargs)
    except InvalidIntent as exc:
        item.refuse(Outcome.INVALID, str(exc), exc.errors)
        return False
    return True


def _batch(producer: Any, size: int) -> AbstractContextManager[Any]:
    """Several messages go to the broker in one write (kombu's publish batch: one Redis pipeline)
    instead of a round trip each; one message keeps the publish retry policy of `apply_async`."""
    batch = getattr(producer, "batch", None)  # kombu >= 5.7, and transports that support it
    # Room for every command (a message may take two), so nothing is flushed before the end.
    return batch(max_size=2 * size + 1) if batch is not None and size > 1 else nullcontext()


def _ledger_batch(size: int) -> AbstractContextManager[Any]:
    book = ledger()
    return book.batched() if book is not None and size > 1 else nullcontext()


def enqueuer(settings: Settings) -> Enqueuer:
    return Enqueuer(get_enqueue_redis(), settings.api_idempotency_ttl, settings.result_expires)


def _sender_name(sender: Any) -> str:
    return sender if isinstance(sender, str) else DEFAULT


class Coalescer:
    """Single intents that arrive together are enqueued together, as a database group-commits:
    while one group is being written (in a thread), the next requests gather, and go as one batch
    (one ledger write and one broker write instead of two round trips each). Under no load a
    group is one intent, published with the usual retry policy; nothing waits for a timer."""

    def __init__(self, enqueuer: Enqueuer, most: int) -> None:
        self.enqueuer = enqueuer
        self.most = most
        self.waiting: list[tuple[Item, asyncio.Future[None]]] = []
        self.drain: asyncio.Task[None] | None = None

    async def enqueue(self, item: Item) -> None:
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((item, done))
        if self.drain is None:
            self.drain = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self.waiting:
                group, self.waiting = self.waiting[: self.most], self.waiting[self.most :]
                try:
                    await run_in_threadpool(self.enqueuer.enqueue, [item for item, _ in group])
                except Exception as exc:  # noqa: BLE001 - each request answers for itself
                    for _, done in group:
                        done.set_exception(exc)
                else:
                    for _, done in group:
                        done.set_result(None)
        finally:
            self.drain = None
