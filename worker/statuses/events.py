"""Webhook bodies -> status and inbound-message events, and the order statuses move in (pure).

Two shapes are read. Meta's (`object: "whatsapp_business_account"`, `entry[].changes[].value`
with `metadata`, `statuses[]`, `messages[]`, `contacts[]`) is the Cloud API's documented
webhook. Interakt's own events (`type: "message_api_delivered"` ..., with `data.customer` and
`data.message`) are read from Interakt's "Message Webhook Format" page, which names the event
types and those two objects but not every field: see docs/webhooks.md.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class DeliveryStatus(StrEnum):
    """Where a wamid is: `accepted` (the API gave a wamid), then what the webhooks said."""

    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# accepted < sent < failed < delivered < read. A status never moves a message to a lower rank, so
# replays and reordering change nothing. `failed` ranks below `delivered`: Meta may report a
# failure for one of the customer's devices after another device got the message, and "it
# reached the customer" is what matters (YCloud's webhook notes say the same of Meta's order).
RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.ACCEPTED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.FAILED: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


def advances(current: DeliveryStatus | None, new: DeliveryStatus) -> bool:
    """True when `new` moves a message forward from `current` (None: nothing known yet)."""
    return current is None or RANK[new] > RANK[current]


class Source(StrEnum):
    META = "meta"
    INTERAKT = "interakt"


META_OBJECT = "whatsapp_business_account"
INTERAKT_STATUS = re.compile(r"^message_(?:api|campaign)_(sent|delivered|read|failed)$")
INTERAKT_INBOUND = "message_received"


class _AsDict:
    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready dict the app's tasks receive."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class StatusEvent(_AsDict):
    """One status of one outgoing message; `error` (code, title, message, details) when failed;
    `pricing` (billable, pricing_model, category, type) as Meta sent it, when it did."""

    wamid: str
    status: DeliveryStatus
    timestamp: float
    recipient_id: str | None = None
    phone_number_id: str | None = None
    error: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    # As the message was sent with it, echoed by Meta (at most 512 characters): the tracker of
    # worker.delivery.callback_data, then the app's own value.
    biz_opaque_callback_data: str | None = None


class Preference(StrEnum):
    """The `value` of a `user_preferences` change (Meta: marketing message preferences)."""

    STOP = "stop"
    RESUME = "resume"


@dataclass(frozen=True)
class PreferenceChange(_AsDict):
    """A customer stopped or resumed marketing messages (Meta's `user_preferences` webhook)."""

    wa_id: str
    value: Preference
    timestamp: float
    category: str = "marketing_messages"
    detail: str | None = None
    phone_number_id: str | None = None


@dataclass(frozen=True)
class InboundMessage(_AsDict):
    """One message a customer sent; `message` is the API's message object as it came."""

    wamid: str
    wa_id: str
    timestamp: float
    type: str
    phone_number_id: str | None = None
    profile_name: str | None = None
    context: dict[str, Any] | None = None
    message: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateUpdate:
    """A `message_template_status_update`: which account's template to re-sync. `waba_id` is the
    webhook entry's `id` (Meta's WhatsApp Business Account id), None when it names none."""

    waba_id: str | None
    name: str


@dataclass(frozen=True)
class PaymentUpdate(_AsDict):
    """A payment's status for an order_details message (Meta's payments webhooks, India): a
    `statuses[]` item of `type: "payment"`. `wamid` is our order message's, `reference_id` the
    order's own; `status` as Meta says it (captured, pending, failed, ...); `transaction` as it came
    (id, type, status, amount, method, error)."""

    wamid: str
    reference_id: str | None
    status: str
    timestamp: float
    recipient_id: str | None = None
    phone_number_id: str | None = None
    amount: dict[str, Any] | None = None
    currency: str | None = None
    transaction: dict[str, Any] | None = None


# The change fields this receiver reads; any other (group and account events) is counted, dropped.
READ_FIELDS = frozenset({"messages", "message_template_status_update", "user_preferences"})


@dataclass(frozen=True)
class Parsed:
    """What a body held. `source` None: a shape this receiver does not know."""

    source: Source | None
    statuses: list[StatusEvent] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    templates: list[TemplateUpdate] = field(default_factory=list)  # status changed: re-sync these
    preferences: list[PreferenceChange] = field(default_factory=list)
    payments: list[PaymentUpdate] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # the fields of changes not read (counted)

    @property
    def events(self) -> int:
        return (
            len(self.statuses)
            + len(self.messages)
            + len(self.templates)
            + len(self.preferences)
            + len(self.payments)
        )


def _seconds(value: Any, default: float) -> float:
    """Meta's epoch seconds as a string, Interakt's ISO times, or `default` (also for a time that
    is not a finite number: "NaN", "1e400", an integer past a float's range)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        try:
            seconds = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            return default
    return seconds if math.isfinite(seconds) else default


# Meta's error fields are a code and a sentence or two; each field is kept (and logged) up to this
# many characters, so a body of one 900 KB message is not a 900 KB log line and Redis value.
ERROR_TEXT_MAX = 1000


def bounded(value: Any) -> Any:
    """An error field as kept: a number or None as it is, anything else as text of at most
    ERROR_TEXT_MAX characters (an object as its JSON)."""
    if value is None or isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:ERROR_TEXT_MAX]


def _meta_error(errors: Any) -> dict[str, Any] | None:
    if not (isinstance(errors, list) and errors and isinstance(errors[0], dict)):
        return None
    first = errors[0]
    data = first.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return {
        "code": bounded(first.get("code")),
        "title": bounded(first.get("title")),
        "message": bounded(first.get("message")),
        "details": bounded(details),
    }


def _pricing(raw: Any) -> dict[str, Any] | None:
    """A status's `pricing`: billable (a bool), pricing_model (CBP, PMP), category (marketing,
    utility, authentication, service, ...) and type (PMP's regular, free_customer_service,
    free_entry_point), each bounded; None when absent or not an object."""
    if not isinstance(raw, dict):
        return None
    billable = raw.get("billable")
    return {
        "billable": billable if isinstance(billable, bool) else None,
        "pricing_model": _short(raw.get("pricing_model")),
        "category": _short(raw.get("category")),
        "type": _short(raw.get("type")),
    }


class Billing(StrEnum):
    """The categories a message is billed by, as counted (Meta's finer ones folded in)."""

    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"
    SERVICE = "service"
    OTHER = "other"  # a category Meta adds (referral_conversion, ...): counted, not lost


FAMILIES = {
    "marketing": Billing.MARKETING,
    "marketing_lite": Billing.MARKETING,
    "utility": Billing.UTILITY,
    "authentication": Billing.AUTHENTICATION,
    "authentication_international": Billing.AUTHENTICATION,
    "service": Billing.SERVICE,
}


def billing(pricing: dict[str, Any]) -> tuple[bool, Billing]:
    """Whether a priced message is billable, and its category as counted. `billable` when Meta
    says; else PMP's `type` (only `regular` is charged; free_customer_service and
    free_entry_point are not)."""
    billable = pricing.get("billable")
    charged = billable if isinstance(billable, bool) else pricing.get("type") == "regular"
    return charged, FAMILIES.get(str(pricing.get("category") or "").lower(), Billing.OTHER)


def tally_field(pricing: dict[str, Any]) -> str:
    """The run counter a priced message adds one to: `billable:<category>` or `free:<category>`."""
    charged, category = billing(pricing)
    return f"{'billable' if charged else 'free'}:{category.value}"


def _short(value: Any) -> str | None:
    """A vocabulary word as kept: text of at most 64 characters, or None."""
    return value[:64] if isinstance(value, str) else None


def _meta_preference(raw: Any, pnid: str | None, now: float) -> PreferenceChange | None:
    if not (isinstance(raw, dict) and isinstance(raw.get("wa_id"), str)):
        return None
    try:
        value = Preference(str(raw.get("value")).lower())
    except ValueError:
        return None
    return PreferenceChange(
        wa_id=raw["wa_id"],
        value=value,
        timestamp=_seconds(raw.get("timestamp"), now),
        category=_short(raw.get("category")) or "marketing_messages",
        detail=_short(raw.get("detail")),
        phone_number_id=pnid,
    )


def _meta_status(raw: Any, pnid: str | None, now: float) -> StatusEvent | None:
    if not (isinstance(raw, dict) and isinstance(raw.get("id"), str)):
        return None
    try:
        status = DeliveryStatus(str(raw.get("status")))
    except ValueError:
        return None
    error = _meta_error(raw.get("errors")) if status is DeliveryStatus.FAILED else None
    return StatusEvent(
        wamid=raw["id"],
        status=status,
        timestamp=_seconds(raw.get("timestamp"), now),
        recipient_id=_text(raw.get("recipient_id")),
        phone_number_id=pnid,
        error=error,
        pricing=_pricing(raw.get("pricing")),
        biz_opaque_callback_data=_callback_data(raw.get("biz_opaque_callback_data")),
    )


def _callback_data(value: Any) -> str | None:
    """A status's biz_opaque_callback_data: text of at most the 512 characters Meta allows."""
    return value[:512] if isinstance(value, str) else None


def _meta_message(
    raw: Any, names: dict[str, str | None], pnid: str | None, now: float
) -> InboundMessage | None:
    if not (isinstance(raw, dict) and isinstance(raw.get("id"), str) and isinstance(raw.get("from"), str)):
        return None
    return InboundMessage(
        wamid=raw["id"],
        wa_id=raw["from"],
        timestamp=_seconds(raw.get("timestamp"), now),
        type=str(raw.get("type") or "unknown"),
        phone_number_id=pnid,
        profile_name=names.get(raw["from"]),
        context=raw.get("context") if isinstance(raw.get("context"), dict) else None,
        message=raw,
    )


def _meta(doc: dict[str, Any], now: float) -> Parsed:
    parsed = Parsed(Source.META)
    for entry in map(_object, _list(doc.get("entry"))):
        waba_id = _text(entry.get("id"))
        for change in _list(entry.get("changes")):
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            if change.get("field") == "message_template_status_update":
                if isinstance(value.get("message_template_name"), str):
                    parsed.templates.append(TemplateUpdate(waba_id, value["message_template_name"]))
                continue
            if change.get("field", "messages") not in READ_FIELDS:  # none named: a message change
                parsed.dropped.append(str(change.get("field")))
                continue
            pnid = _text(_object(value.get("metadata")).get("phone_number_id"))
            names = {
                c["wa_id"]: _text(_object(c.get("profile")).get("name"))
                for c in map(_object, _list(value.get("contacts")))
                if isinstance(c.get("wa_id"), str)
            }
            parsed.statuses.extend(
                s for s in (_meta_status(r, pnid, now) for r in _list(value.get("statuses"))) if s
            )
            parsed.messages.extend(
                m for m in (_meta_message(r, names, pnid, now) for r in _list(value.get("messages"))) if m
            )
            parsed.preferences.extend(
                p for p in (_meta_preference(r, pnid, now) for r in _list(value.get("user_preferences"))) if p
            )
            parsed.payments.extend(
                p for p in (_meta_payment(r, pnid, now) for r in _list(value.get("statuses"))) if p
            )
    return parsed


def _meta_payment(raw: Any, pnid: str | None, now: float) -> PaymentUpdate | None:
    if not (isinstance(raw, dict) and raw.get("type") == "payment" and isinstance(raw.get("id"), str)):
        return None
    payment = _object(raw.get("payment"))
    return PaymentUpdate(
        wamid=raw["id"],
        reference_id=_text(payment.get("reference_id")),
        status=str(raw.get("status") or "unknown"),
        timestamp=_seconds(raw.get("timestamp"), now),
        recipient_id=_text(raw.get("recipient_id")),
        phone_number_id=pnid,
        amount=payment.get("amount") if isinstance(payment.get("amount"), dict) else None,
        currency=_text(payment.get("currency")),
        transaction=payment.get("transaction") if isinstance(payment.get("transaction"), dict) else None,
    )


def _customer_number(customer: dict[str, Any]) -> str | None:
    number = customer.get("channel_phone_number")
    if not number and customer.get("phone_number"):
        number = f"{customer.get('country_code') or ''}{customer['phone_number']}"
    return re.sub(r"\D", "", str(number)) or None if number else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _interakt(doc: dict[str, Any], now: float) -> Parsed:
    data = _object(doc.get("data"))
    message, customer = _object(data.get("message")), _object(data.get("customer"))
    wamid, number = message.get("id"), _customer_number(customer)
    when = _seconds(message.get("received_at_utc") or doc.get("timestamp"), now)
    if not isinstance(wamid, str) or not wamid:
        return Parsed(Source.INTERAKT)
    status = INTERAKT_STATUS.match(str(doc.get("type")))
    if status:
        state = DeliveryStatus(status.group(1))
        reason = bounded(message.get("channel_failure_reason"))
        error = {"code": None, "title": "failed (Interakt)", "message": reason, "details": None}
        event = StatusEvent(
            wamid=wamid,
            status=state,
            timestamp=when,
            recipient_id=number,
            error=error if state is DeliveryStatus.FAILED else None,
        )
        return Parsed(Source.INTERAKT, statuses=[event])
    if not number:
        return Parsed(Source.INTERAKT)
    kind = str(message.get("message_content_type") or "unknown").lower()
    inbound = InboundMessage(
        wamid=wamid,
        wa_id=number,
        timestamp=when,
        type=kind,
        profile_name=_object(customer.get("traits")).get("name"),
        message=message,
    )
    return Parsed(Source.INTERAKT, messages=[inbound])


def parse(doc: Any, now: float) -> Parsed:
    """The events in a webhook body; `now` stands in for a missing timestamp."""
    if not isinstance(doc, dict):
        return Parsed(None)
    if doc.get("object") == META_OBJECT:
        return _meta(doc, now)
    kind = doc.get("type")
    if isinstance(kind, str) and (INTERAKT_STATUS.match(kind) or kind == INTERAKT_INBOUND):
        return _interakt(doc, now)
    return Parsed(None)
