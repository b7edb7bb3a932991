"""Applying webhook events, run by workers: statuses moved forward, failures kept, apps told.

A batch of inbox entries becomes statuses and inbound messages (`events.parse`); statuses go
through `StatusStore.apply` (one round trip, order-safe), inbound messages keep the customer
window and are de-duplicated by wamid. Only a change reaches the outside: a status that moved
is counted, a failure is kept in the dead letters with its code like any other failure (and
can be re-driven), and the app's tasks (DISPATCH_STATUS_TASK, DISPATCH_INBOUND_TASK) and
DISPATCH_AUTO_READ's mark_read are enqueued; an API key's HTTP callback (worker.callbacks) gets
each of its statuses and its senders' inbound messages as an event in the callbacks' outbox,
which other threads POST. Nothing here talks HTTP. Each change carries an `event_id` derived from
it, the same however often it is applied, so an app drops a repeat: a change is written "to tell"
in the step that records it and removed once told, so a worker that dies between the two leaves
it to another's re-tell (`Applier.retell`, worker.statuses.telling): the app is told at least once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.callbacks.deliver import Routes
from worker.callbacks.events import EventType, event, event_id
from worker.delivery.callback_data import read_tracker
from worker.delivery.deadletters import DeadLetters
from worker.delivery.errors import UndeliveredError
from worker.delivery.idempotency import StoredResult
from worker.delivery.optouts import Meaning, OptOuts, Reason, meaning, said
from worker.delivery.senders import DEFAULT
from worker.delivery.window import CustomerWindows
from worker.ops import metrics
from worker.ops.logs import get_logger
from worker.statuses.events import (
    DeliveryStatus,
    InboundMessage,
    PaymentUpdate,
    Preference,
    PreferenceChange,
    StatusEvent,
    TemplateUpdate,
    billing,
    parse,
)
from worker.statuses.inbound import changed_number, content, errors, referral
from worker.statuses.inbox import InboxEntry
from worker.statuses.telling import Tells, Untold, entry
from worker.statuses.tracker import Applied, StatusStore, Tie

log = get_logger("whatsapp_dispatch.statuses")

# The app's tasks go to Celery's default queue, which any app's own worker reads unless told
# otherwise; this project's workers read only `whatsapp` and `campaign`, so they never take them.
APP_QUEUE = "celery"
MARK_READ = "worker.tasks.mark_read"
SYNC_TEMPLATES = "worker.tasks.sync_templates"
TELL_LEASE = 30.0  # seconds (DISPATCH_TELL_LEASE): far past the applier's time from recording to telling
RETELL_BATCH = 500

Enqueue = Callable[[str, dict[str, Any], str | None], None]  # task name, kwargs, queue (None: routed)
ResultDocument = Callable[[str, Any, str], StoredResult]  # task id, result, Celery state


# Change fields Meta sends that this receiver drops on purpose, each counted by name
# (wa_webhook_events_applied_total{event=<field>, outcome="dropped"}); any other is "other".
KNOWN_DROPPED = frozenset(
    {
        "account_update",
        "account_alerts",
        "account_review_update",
        "business_capability_update",
        "phone_number_name_update",
        "phone_number_quality_update",
        "security",
        "message_echoes",
        "group_lifecycle_update",
        "group_participants_update",
        "group_settings_update",
        "group_status_update",
    }
)


@dataclass(frozen=True)
class Reactions:
    """What to do beyond recording (from the settings)."""

    status_task: str | None
    inbound_task: str | None
    auto_read: bool
    phone_number_id: str  # for events that do not name one (Interakt's)
    senders: dict[str, str]  # phone_number_id -> sender name, so a message is marked read by its number
    accounts: dict[str, str]  # waba_id -> a sender on that account, whose template registry re-syncs
    optout_keywords: frozenset[str] = frozenset()  # normalized (worker.delivery.optouts.keywords)
    optin_keywords: frozenset[str] = frozenset()
    payment_task: str | None = None

    def resyncs(self, update: TemplateUpdate) -> list[str]:
        """The senders whose registry re-syncs `update`'s template: the one of its account (a
        registry is per WABA), or one per account when the event names none we know."""
        known = self.accounts.get(update.waba_id or "")
        return [known] if known else sorted(set(self.accounts.values()))


def status_change(applied: Applied) -> dict[str, Any]:
    """The documented dict DISPATCH_STATUS_TASK receives (as its `status` argument)."""
    previous = applied.previous.value if applied.previous else None
    return status_told(applied.event.as_dict(), previous, applied.origin)


def status_told(status: dict[str, Any], previous: str | None, origin: dict[str, str]) -> dict[str, Any]:
    """`status_change` from a status event's dict (as its to-tell entry keeps it, pure)."""
    campaign = {"name": origin["campaign"], "run_id": origin["run_id"]} if origin.get("campaign") else None
    _, own = read_tracker(status.get("biz_opaque_callback_data"))
    return {
        **status,
        "biz_opaque_callback_data": own,  # the app's own value, without the tracker
        "previous_status": previous,
        "idempotency_key": origin.get("key"),
        "task_id": origin.get("task_id"),
        "campaign": campaign,
        "event_id": event_id(EventType.MESSAGE_STATUS, status["wamid"], str(status["status"])),
    }


def payment_change(payment: PaymentUpdate, origin: dict[str, str]) -> dict[str, Any]:
    """The documented dict DISPATCH_PAYMENT_TASK receives (as its `payment` argument), and the
    `payment.status` callback's data: the payment as Meta says it, tied to the order by its
    `reference_id` and to our order_details message (its task, key and campaign)."""
    transaction = payment.transaction or {}
    return {
        **payment.as_dict(),
        "task_id": origin.get("task_id"),
        "idempotency_key": origin.get("key"),
        "event_id": event_id(
            EventType.PAYMENT_STATUS,
            payment.wamid,
            payment.status,
            str(transaction.get("id") or ""),
            str(transaction.get("status") or ""),
        ),
    }


def inbound(message: InboundMessage, replied_to: dict[str, str] | None = None) -> dict[str, Any]:
    """The documented dict DISPATCH_INBOUND_TASK receives (as its `message` argument): the message
    as it came, its typed `content`, and `reply_to` when it answers one of our own messages
    (`replied_to`: what the wamid index keeps of it)."""
    # Meta's message object always names `from`; Interakt's events name the customer apart, and
    # their content is Interakt's own (its `type` is the kind, the object is kept as it came).
    raw = message.message if "from" in message.message else {}
    return {
        **message.as_dict(),
        "content": content(raw) if raw else {"kind": message.type, "object": message.message},
        "referral": referral(raw),
        "errors": errors(raw),
        "reply_to": reply_to(message.context, replied_to),
        "event_id": event_id(EventType.MESSAGE_INBOUND, message.wamid),
    }


def reply_to(context: dict[str, Any] | None, origin: dict[str, str] | None) -> dict[str, Any] | None:
    """Our own message the customer replied to: its wamid, task, key and campaign."""
    wamid = context.get("id") if context else None
    if not isinstance(wamid, str) or not origin:
        return None
    campaign = (
        {"name": origin["campaign"], "run_id": origin.get("run_id")} if origin.get("campaign") else None
    )
    return {
        "wamid": wamid,
        "task_id": origin.get("task_id"),
        "idempotency_key": origin.get("key"),
        "campaign": campaign,
    }


class Applier:
    def __init__(
        self,
        store: StatusStore,
        windows: CustomerWindows,
        dead: DeadLetters,
        reactions: Reactions,
        enqueue: Enqueue,
        routes: Routes | None = None,
        optouts: OptOuts | None = None,
        results: ResultDocument | None = None,
        tell_lease: float = TELL_LEASE,
    ) -> None:
        """`results`: a task's Celery result document (worker.services), when the results live in
        the state Redis: an intent the tracker ties back gets its SUCCESS. `tell_lease`: how long
        a change recorded but not yet told waits before another worker re-tells it."""
        self.results = results
        self.tells = Tells(store.redis, tell_lease)
        self.store = store
        self.windows = windows
        self.dead = dead
        self.reactions = reactions
        self.enqueue = enqueue
        self.routes = routes
        self.optouts = optouts or OptOuts(store.redis)

    def telling(self, kind: EventType) -> bool:
        """Whether a change of `kind` is told to anyone (a task, or some key's callback): only
        then is it written to tell."""
        task = {
            EventType.MESSAGE_STATUS: self.reactions.status_task,
            EventType.MESSAGE_INBOUND: self.reactions.inbound_task,
            EventType.PAYMENT_STATUS: self.reactions.payment_task,
        }[kind]
        return bool(task) or (self.routes is not None and bool(self.routes.keys))

    def apply(self, entries: list[InboxEntry]) -> None:
        statuses: list[StatusEvent] = []
        messages: list[InboundMessage] = []
        templates: set[TemplateUpdate] = set()
        preferences: list[PreferenceChange] = []
        payments: list[PaymentUpdate] = []
        for entry_id, fields in entries:
            try:
                parsed = parse(json.loads(fields["body"]), float(fields["received"]))
            except (KeyError, ValueError):  # the web process checked it: only a foreign writer gets here
                metrics.WEBHOOK_REJECTED.labels("unreadable_entry").inc()
                log.error("webhook_unreadable_entry", entry_id=entry_id)
                continue
            statuses.extend(parsed.statuses)
            messages.extend(parsed.messages)
            templates.update(parsed.templates)
            preferences.extend(parsed.preferences)
            payments.extend(parsed.payments)
            for dropped in parsed.dropped:  # group and account events: not ours to act on
                kind = dropped if dropped in KNOWN_DROPPED else "other"
                metrics.WEBHOOK_APPLIED.labels(kind, "dropped").inc()
        now = time.time()
        due = self.tells.due(now)
        applied = self.store.apply(statuses, due if self.telling(EventType.MESSAGE_STATUS) else None)
        self.on_tied(applied)
        self.on_pricing(applied)
        changes = [told for a in applied if (told := self.on_status(a, now)) is not None]
        self.on_preferences(preferences)
        firsts = self.on_messages(messages, now, due)
        paid = self.on_payments(payments, due)
        self.call_back(changes, firsts, now, paid, told=True)
        for update in sorted(templates, key=lambda u: (u.waba_id or "", u.name)):
            # approved, paused, rejected...: its account's registry re-syncs it
            for sender in self.reactions.resyncs(update):
                log.info(
                    "template_status_update", template=update.name, waba_id=update.waba_id, sender=sender
                )
                self.enqueue(SYNC_TEMPLATES, {"name": update.name, "sender": sender}, None)

    def retell(self, now: float, count: int = RETELL_BATCH) -> int:
        """Tell again what a worker recorded and did not tell (it died, or Redis or the broker
        failed it) once its lease ended: the app's tasks and the callbacks, as the applier would
        have; then the entries go. How many were re-told."""
        untold = self.tells.take(now, count)
        if not untold:
            return 0
        statuses = [u for u in untold if u.kind is EventType.MESSAGE_STATUS]
        origins = self.store.origins([u.entry["event"]["wamid"] for u in statuses])
        changes = [retold_status(u, origin) for u, origin in zip(statuses, origins, strict=True)]
        firsts = [u.entry["data"] for u in untold if u.kind is EventType.MESSAGE_INBOUND]
        paid = [u.entry["data"] for u in untold if u.kind is EventType.PAYMENT_STATUS]
        for task, arg, told in (
            (self.reactions.status_task, "status", changes),
            (self.reactions.inbound_task, "message", firsts),
            (self.reactions.payment_task, "payment", paid),
        ):
            if task:
                for data in told:
                    self.enqueue(task, {arg: data}, APP_QUEUE)
        self.call_back(changes, firsts, now, paid, told=False, ids=[u.event_id for u in untold])
        log.warning("webhook_retold", statuses=len(changes), inbound=len(firsts), payments=len(paid))
        return len(untold)

    def on_payments(self, payments: list[PaymentUpdate], due: float = 0.0) -> list[dict[str, Any]]:
        """Each payment status seen for the first time is told to the app (DISPATCH_PAYMENT_TASK,
        and the `payment.status` callback of the key its order was sent with); those, as told."""
        changes = [payment_change(p, self.store.origin(p.wamid)) for p in payments]
        told = []
        tell = (
            [(c["event_id"], entry(EventType.PAYMENT_STATUS, c)) for c in changes]
            if self.telling(EventType.PAYMENT_STATUS)
            else None
        )
        firsts = self.store.first_seen([c["event_id"] for c in changes], tell, due)
        for change, first in zip(changes, firsts, strict=True):
            metrics.WEBHOOK_APPLIED.labels("payment", "changed" if first else "unchanged").inc()
            if not first:
                continue
            told.append(change)
            log.info(
                "payment_status",
                wamid=change["wamid"],
                status=change["status"],
                order_task_id=change["task_id"],
            )
            if self.reactions.payment_task:
                self.enqueue(self.reactions.payment_task, {"payment": change}, APP_QUEUE)
        return told

    def call_back(
        self,
        changes: list[dict[str, Any]],
        firsts: list[dict[str, Any]],
        now: float,
        paid: list[dict[str, Any]] | None = None,
        told: bool = False,
        ids: list[str] | None = None,
    ) -> None:
        """The HTTP callbacks' events for what changed (status changes, inbound messages and
        payments as told), into their outbox in one round trip with the removal of their to-tell
        entries (`ids`; with `told`, those of every change written to tell): a status and a
        payment to the key its message was sent with, an inbound message to every key that may
        use its sender."""
        paid = paid or []
        ids = list(ids or [])
        if told:
            for kind, done in (
                (EventType.MESSAGE_STATUS, changes),
                (EventType.MESSAGE_INBOUND, firsts),
                (EventType.PAYMENT_STATUS, paid),
            ):
                ids += [d["event_id"] for d in done] if self.telling(kind) else []
        events = self.callback_events(changes, firsts, now, paid)
        if not events and not ids:
            return
        pipe = self.store.redis.pipeline(transaction=True)
        for callback, key in events:
            self.routes.outbox.queue(pipe, callback, key, now)  # type: ignore[union-attr]
        self.tells.done(pipe, ids)
        pipe.execute()

    def callback_events(
        self,
        changes: list[dict[str, Any]],
        firsts: list[dict[str, Any]],
        now: float,
        paid: list[dict[str, Any]],
    ) -> list[tuple[dict[str, Any], str]]:
        """Each callback event and the key it goes to."""
        if self.routes is None or not self.routes.keys:
            return []
        told: list[tuple[dict[str, Any], str]] = []
        keys = self.routes.of_tasks([d["task_id"] or "" for d in changes])
        for data, key in zip(changes, keys, strict=True):
            if key is not None:
                told.append((event(EventType.MESSAGE_STATUS, data["event_id"], data, now), key))
        for data in firsts:
            sender = self.reactions.senders.get(data["phone_number_id"] or self.reactions.phone_number_id)
            for key in self.routes.of_sender(sender or DEFAULT):
                told.append((event(EventType.MESSAGE_INBOUND, data["event_id"], data, now), key))
        paid = paid or []
        for data, key in zip(paid, self.routes.of_tasks([p["task_id"] or "" for p in paid]), strict=True):
            if key is not None:
                told.append((event(EventType.PAYMENT_STATUS, data["event_id"], data, now), key))
        return told

    def on_tied(self, applied: list[Applied]) -> None:
        """An ambiguous intent the tracker tied back is `sent`: logged, counted, and its task's
        result is its SendResult now (a caller that waited saw the failure)."""
        for a in applied:
            if a.tied is not Tie.SENT:
                continue
            origin, wamid = a.origin, a.event.wamid
            metrics.SENT.labels(origin.get("sender", "?"), origin.get("type", "?")).inc()
            log.warning("outcome", outcome="tracked", wamid=wamid, key=origin.get("key"))
            if self.results and origin.get("task_id"):
                result = {
                    "wamid": wamid,
                    "wa_id": a.event.recipient_id,
                    "to": origin.get("to"),
                    "type": origin.get("type"),
                    "attempts": int(origin.get("attempts") or 0),
                    "idempotency_key": origin.get("key"),
                    "duplicate": False,
                }
                document = self.results(origin["task_id"], result, "SUCCESS")
                pipe = self.store.redis.pipeline(transaction=True)
                document.write(pipe)
                pipe.execute()

    def on_pricing(self, applied: list[Applied]) -> None:
        """Each wamid's first pricing, counted once (its sent, delivered and read repeat it)."""
        for a in applied:
            if a.priced and a.event.pricing:
                charged, category = billing(a.event.pricing)
                metrics.PRICED.labels(a.origin.get("sender", "?"), category, str(charged).lower()).inc()

    def on_preferences(self, changes: list[PreferenceChange]) -> None:
        """Meta's `user_preferences`: a customer stopped marketing messages (an opt-out), or
        resumed them (opted back in)."""
        for change in changes:
            if change.category != "marketing_messages":
                continue
            if change.value is Preference.STOP:
                done = self.optouts.record(
                    change.wa_id, Reason.USER_PREFERENCES, change.timestamp, change.detail or "stop"
                )
            else:
                done = self.optouts.remove(change.wa_id)
            log.info("user_preferences", wa_id=change.wa_id, value=change.value, changed=done)

    def on_keyword(self, message: InboundMessage) -> None:
        """An inbound message that is an opt-out keyword (STOP) opts its customer out of marketing
        messages; an opt-in keyword (START) back in."""
        # Meta's message object names `from`; Interakt's event keeps a text as `message` (unverified).
        text = said(message.message) if "from" in message.message else message.message.get("message")
        text = text if isinstance(text, str) else None
        found = meaning(text, self.reactions.optout_keywords, self.reactions.optin_keywords)
        if found is Meaning.STOP:
            done = self.optouts.record(message.wa_id, Reason.KEYWORD, message.timestamp, str(text).strip())
        elif found is Meaning.START:
            done = self.optouts.remove(message.wa_id)
        else:
            return
        log.info("optout_keyword", wa_id=message.wa_id, meaning=found, changed=done)

    def on_status(self, applied: Applied, now: float) -> dict[str, Any] | None:
        """Counts, logs and tells the app of a status; what it was told when it changed anything."""
        event = applied.event
        metrics.WEBHOOK_APPLIED.labels("status", "changed" if applied.changed else "unchanged").inc()
        if not applied.changed:
            return None
        metrics.WEBHOOK_LAG.observe(max(0.0, now - event.timestamp))
        metrics.STATUSES.labels(applied.origin.get("sender", "?"), event.status).inc()
        log.info("delivery_status", wamid=event.wamid, status=event.status, key=applied.origin.get("key"))
        if event.status is DeliveryStatus.FAILED:
            self.on_failure(applied)
        told = status_change(applied)
        if self.reactions.status_task:
            self.enqueue(self.reactions.status_task, {"status": told}, APP_QUEUE)
        return told

    def on_failure(self, applied: Applied) -> None:
        """A failure by webhook is a failure like any other: counted, and kept for re-drive."""
        error = applied.event.error or {}
        origin = applied.origin
        exc = UndeliveredError(
            f"({error.get('code')}) {error.get('title')}: {error.get('message')}",
            {k: error.get(k) for k in ("code", "title", "message", "details")}
            | {"wamid": applied.event.wamid},
        )
        sender = origin.get("sender", "?")
        to = origin.get("to") or applied.event.recipient_id
        if exc.code == 131050 and to:  # the customer stopped marketing messages: not again
            self.optouts.record(
                to, Reason.META_131050, applied.event.timestamp, f"131050 {error.get('title')}"
            )
        metrics.FAILED.labels(sender, origin.get("type", "?"), exc.kind, str(exc.code or "")).inc()
        log.error(
            "outcome", outcome=exc.kind, error_code=exc.code, error=exc.message, wamid=applied.event.wamid
        )
        if "key" in origin and "intent" in origin:
            kept = {"error": exc.message, **exc.info}
            self.dead.undelivered(origin["key"], kept)
            self.dead.add(
                origin["key"],
                json.loads(origin["intent"]),
                kept,
                int(origin.get("attempts") or 0),
                origin.get("task_id", ""),
            )

    def on_messages(
        self, messages: list[InboundMessage], now: float, due: float = 0.0
    ) -> list[dict[str, Any]]:
        """Each message seen for the first time keeps its window and is told; those messages, as
        the app is told of them (`inbound`, written to tell in the step that first sees it)."""
        firsts = []
        tolds = [inbound(m, self._replied_to(m)) for m in messages]
        tell = (
            [(t["event_id"], entry(EventType.MESSAGE_INBOUND, t)) for t in tolds]
            if self.telling(EventType.MESSAGE_INBOUND)
            else None
        )
        seen = self.store.first_seen([m.wamid for m in messages], tell, due)
        for message, told, first in zip(messages, tolds, seen, strict=True):
            metrics.WEBHOOK_APPLIED.labels("message", "changed" if first else "unchanged").inc()
            if not first:
                continue
            firsts.append(told)
            metrics.WEBHOOK_LAG.observe(max(0.0, now - message.timestamp))
            pnid = message.phone_number_id or self.reactions.phone_number_id
            self.windows.touch(pnid, message.wa_id, message.timestamp)
            moved = changed_number(message.message)
            if moved:  # the conversation goes on at the customer's new number
                self.windows.touch(pnid, moved[1], message.timestamp)
            log.info("inbound_message", wamid=message.wamid, wa_id=message.wa_id, type=message.type)
            self.on_keyword(message)
            if self.reactions.inbound_task:
                self.enqueue(self.reactions.inbound_task, {"message": told}, APP_QUEUE)
            if self.reactions.auto_read:
                receipt = {"message_id": message.wamid, "sender": self.reactions.senders.get(pnid)}
                self.enqueue(MARK_READ, {k: v for k, v in receipt.items() if v}, None)
        return firsts

    def _replied_to(self, message: InboundMessage) -> dict[str, str] | None:
        """What the wamid index keeps of the message the customer replied to, if it is ours."""
        wamid = (message.context or {}).get("id")
        return self.store.origin(wamid) or None if isinstance(wamid, str) else None


def retold_status(untold: Untold, origin: dict[str, str]) -> dict[str, Any]:
    """The status change an entry keeps, as the app would have been told it (pure): its origin is
    the wamid index now, or what a request in flight noted of it."""
    kept = untold.entry
    return status_told(kept["event"], kept["previous"], origin or kept.get("noted") or {})
