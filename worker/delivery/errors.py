"""What can go wrong with a send, as a small exception hierarchy keyed on Meta's error codes.

Classification branches on `error.code`, never on the HTTP status: the same code
arrives as 400 from one route and 429 from another.

Source of the code table: Meta, WhatsApp Cloud API, "Error codes"
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes),
plus the Graph API's generic codes (0-4, 10, 100, 190, 200-299, 368) from
"Graph API > Handling errors". `error_subcode` is deprecated in v16+ and ignored.

Every exception carries its data as a dict in `args[1]` so that Celery's JSON
result backend can rebuild it on the caller's side with the same attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class Handling(StrEnum):
    """What a Meta error code calls for."""

    TRANSIENT = "transient"  # retried with backoff: the same request may succeed a moment later
    THROTTLE = "throttle"  # transient, and the whole phone number slows down (the shared limiter)
    PAIR = "pair"  # throughput to one recipient exceeded: retried later, only that recipient slowed
    ACCOUNT = "account"  # no retry can fix the account: the number pauses (the circuit breaker)
    PERMANENT = "permanent"  # this message is refused: never retried


@dataclass(frozen=True)
class ErrorCode:
    title: str
    handling: Handling


# Each code once. A code that is not here is permanent, but 200-299 (permission errors) are account.
CODES: dict[int, ErrorCode] = {
    0: ErrorCode("AuthException", Handling.ACCOUNT),
    1: ErrorCode("API Unknown", Handling.TRANSIENT),
    2: ErrorCode("API Service", Handling.TRANSIENT),
    3: ErrorCode("API Method", Handling.ACCOUNT),
    4: ErrorCode("API Too Many Calls", Handling.THROTTLE),
    10: ErrorCode("Permission Denied", Handling.ACCOUNT),
    100: ErrorCode("Invalid Parameter", Handling.PERMANENT),
    190: ErrorCode("Access token has expired", Handling.ACCOUNT),
    368: ErrorCode("Temporarily blocked for policies violations", Handling.ACCOUNT),
    80007: ErrorCode("Rate limit issues", Handling.THROTTLE),
    130429: ErrorCode("Rate limit hit", Handling.THROTTLE),
    130472: ErrorCode("User's number is part of an experiment", Handling.PERMANENT),
    131000: ErrorCode("Something went wrong", Handling.TRANSIENT),
    131005: ErrorCode("Access denied", Handling.ACCOUNT),
    131008: ErrorCode("Required parameter is missing", Handling.PERMANENT),
    131009: ErrorCode("Parameter value is not valid", Handling.PERMANENT),
    131016: ErrorCode("Service unavailable", Handling.TRANSIENT),
    131021: ErrorCode("Recipient cannot be sender", Handling.PERMANENT),
    131026: ErrorCode("Message undeliverable", Handling.PERMANENT),
    131031: ErrorCode("Account has been locked", Handling.ACCOUNT),
    131042: ErrorCode("Business eligibility payment issue", Handling.ACCOUNT),
    131045: ErrorCode("Incorrect certificate", Handling.ACCOUNT),
    131047: ErrorCode("Re-engagement message", Handling.PERMANENT),
    131048: ErrorCode("Spam rate limit hit", Handling.ACCOUNT),
    131049: ErrorCode("Meta chose not to deliver", Handling.ACCOUNT),
    131050: ErrorCode("User has stopped marketing messages", Handling.PERMANENT),
    131051: ErrorCode("Unsupported message type", Handling.PERMANENT),
    131052: ErrorCode("Media download error", Handling.PERMANENT),
    131053: ErrorCode("Media upload error", Handling.PERMANENT),
    131056: ErrorCode("(Business Account, Consumer Account) pair rate limit hit", Handling.PAIR),
    131057: ErrorCode("Account in maintenance mode", Handling.TRANSIENT),
    132000: ErrorCode("Template param count mismatch", Handling.PERMANENT),
    132001: ErrorCode("Template does not exist", Handling.PERMANENT),
    132005: ErrorCode("Template hydrated text too long", Handling.PERMANENT),
    132007: ErrorCode("Template format character policy violated", Handling.PERMANENT),
    132012: ErrorCode("Template parameter format mismatch", Handling.PERMANENT),
    132015: ErrorCode("Template is paused", Handling.PERMANENT),
    132016: ErrorCode("Template is disabled", Handling.PERMANENT),
}


def handling_of(code: int) -> Handling:
    if code in CODES:
        return CODES[code].handling
    return Handling.ACCOUNT if 200 <= code < 300 else Handling.PERMANENT


def codes_with(*handlings: Handling) -> frozenset[int]:
    return frozenset(code for code, entry in CODES.items() if entry.handling in handlings)


THROTTLE_CODES = codes_with(Handling.THROTTLE)


class Kind(StrEnum):
    """The closed vocabulary of failures (and, last four, of causes to retry later): `kind` in
    results, dead letters, metrics and logs."""

    ERROR = "error"
    INVALID = "invalid"
    API_ERROR = "api_error"
    TRANSIENT = "transient"
    PAIR_RATE_LIMITED = "pair_rate_limited"
    PERMANENT = "permanent"
    ACCOUNT = "account"
    AMBIGUOUS = "ambiguous"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    UNDELIVERED = "undelivered"
    OPTED_OUT = "opted_out"
    NOT_ENQUEUED = "not_enqueued"
    BUSY = "busy"
    PAUSED = "paused"
    RATE_LIMITED = "rate_limited"
    DAILY_LIMIT = "daily_limit"


class DispatchError(Exception):
    """Base of every failure a task can end with; `kind` is the closed vocabulary used in results."""

    kind: ClassVar[Kind] = Kind.ERROR

    def __init__(self, message: str, info: dict[str, Any] | None = None) -> None:
        info = dict(info or {})
        info.setdefault("kind", self.kind)
        super().__init__(message, info)

    @property
    def message(self) -> str:
        return self.args[0]

    @property
    def info(self) -> dict[str, Any]:
        return self.args[1]

    @property
    def code(self) -> int | None:
        return self.info.get("code")

    @property
    def retry_after(self) -> float | None:
        return self.info.get("retry_after")

    def __str__(self) -> str:
        return self.message


class InvalidIntent(DispatchError, ValueError):
    """The intent breaks the API's rules; raised at enqueue time, nothing is sent."""

    kind = Kind.INVALID

    @classmethod
    def from_fields(cls, errors: list[tuple[str, str]]) -> InvalidIntent:
        text = "; ".join(f"{field}: {reason}" for field, reason in errors)
        return cls(
            f"invalid message intent: {text}", {"errors": [{"field": f, "reason": r} for f, r in errors]}
        )

    @property
    def errors(self) -> list[dict[str, str]]:
        return self.info.get("errors", [])


class ApiError(DispatchError):
    """The API answered with an error body (or an error status without one)."""

    kind = Kind.API_ERROR


class TransientError(ApiError):
    kind = Kind.TRANSIENT


class PairRateLimited(TransientError):
    kind = Kind.PAIR_RATE_LIMITED


class PermanentError(ApiError):
    kind = Kind.PERMANENT


class AccountError(ApiError):
    kind = Kind.ACCOUNT


class AmbiguousError(DispatchError):
    """The request may have reached the API but no answer came back: it may have been sent."""

    kind = Kind.AMBIGUOUS


class RetriesExhausted(DispatchError):
    """Transient failures until the attempt or age bound; carries the last API error's data."""

    kind = Kind.EXHAUSTED


class ExpiredError(DispatchError):
    """The intent outlived DISPATCH_MAX_AGE before it could be sent."""

    kind = Kind.EXPIRED


class UndeliveredError(DispatchError):
    """The API accepted the message (a wamid came back), then a status webhook reported it failed."""

    kind = Kind.UNDELIVERED


class OptedOutError(DispatchError):
    """The customer opted out of marketing messages (worker.delivery.optouts): a campaign message or
    a marketing template to them is not sent; `info` says why and since when."""

    kind = Kind.OPTED_OUT


class EnqueueError(DispatchError):
    """The broker could not be reached within the publish retry bound: the intent was not enqueued."""

    kind = Kind.NOT_ENQUEUED


def classify(code: int | None, http_status: int) -> type[ApiError]:
    """Which exception a response maps to: by Meta code first, by status only when there is no code."""
    if code is not None:
        return {
            Handling.TRANSIENT: TransientError,
            Handling.THROTTLE: TransientError,
            Handling.PAIR: PairRateLimited,
            Handling.ACCOUNT: AccountError,
            Handling.PERMANENT: PermanentError,
        }[handling_of(code)]
    if http_status == 429 or http_status >= 500:
        return TransientError
    if http_status in (401, 403):
        return AccountError
    return PermanentError


def api_error(http_status: int, body: Any, retry_after: float | None = None) -> ApiError:
    """Build the exception for an error response from Meta's `{"error": {...}}` body."""
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    code = err.get("code")
    code = int(code) if isinstance(code, (int, str)) and str(code).lstrip("-").isdigit() else None
    title = (
        err.get("error_user_title")
        or err.get("title")
        or (CODES[code].title if code in CODES else None)
        or f"HTTP {http_status}"
    )
    message = err.get("message") or f"HTTP {http_status}"
    details = (
        (err.get("error_data") or {}).get("details") if isinstance(err.get("error_data"), dict) else None
    )
    info = {
        "code": code,
        "title": title,
        "message": message,
        "details": details,
        "http_status": http_status,
        "fbtrace_id": err.get("fbtrace_id"),
        "retry_after": retry_after,
    }
    label = f"({code}) {title}" if code is not None else title
    text = f"{label}: {message}" + (f" - {details}" if details and details != message else "")
    return classify(code, http_status)(text, info)


def rebuild(error: dict[str, Any]) -> DispatchError:
    """The exception a kept failure was, from its stored data (`{"error": message, **info}`)."""
    classes: list[type[DispatchError]] = [DispatchError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    by_kind: dict[str, type[DispatchError]] = {cls.kind: cls for cls in classes}
    info = {k: v for k, v in error.items() if k != "error"}
    return by_kind.get(str(info.get("kind")), DispatchError)(error.get("error", "failed"), info)
