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

from typing import Any

TITLES: dict[int, str] = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    3: "API Method",
    4: "API Too Many Calls",
    10: "Permission Denied",
    100: "Invalid Parameter",
    190: "Access token has expired",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131005: "Access denied",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131031: "Account has been locked",
    131042: "Business eligibility payment issue",
    131045: "Incorrect certificate",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "Meta chose not to deliver",
    131050: "User has stopped marketing messages",
    131051: "Unsupported message type",
    131052: "Media download error",
    131053: "Media upload error",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    132000: "Template param count mismatch",
    132001: "Template does not exist",
    132005: "Template hydrated text too long",
    132007: "Template format character policy violated",
    132012: "Template parameter format mismatch",
    132015: "Template is paused",
    132016: "Template is disabled",
}

# Retried with backoff: the same request may succeed a moment later.
TRANSIENT_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131057})
# Throughput to one recipient exceeded: retry later, and only that recipient is slowed.
PAIR_RATE_LIMIT_CODE = 131056
# Codes that mean "slow the whole phone number down" for the shared limiter.
THROTTLE_CODES = frozenset({4, 80007, 130429})
# No retry can fix the account: auth, permission, integrity, payment, quality.
ACCOUNT_CODES = frozenset({0, 3, 10, 190, 368, 131005, 131031, 131042, 131045, 131048, 131049}) | frozenset(
    range(200, 300)
)
# Everything else (100, 131008, 131009, 131021, 131026, 131047, 131050-131053, 132000-132016, ...)
# is permanent for this message: never retried.


class DispatchError(Exception):
    """Base of every failure a task can end with; `kind` is the closed vocabulary used in results."""

    kind = "error"

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

    kind = "invalid"

    @classmethod
    def from_fields(cls, errors: list[tuple[str, str]]) -> InvalidIntent:
        text = "; ".join(f"{field}: {reason}" for field, reason in errors)
        return cls(f"invalid message intent: {text}", {"errors": [{"field": f, "reason": r} for f, r in errors]})

    @property
    def errors(self) -> list[dict[str, str]]:
        return self.info.get("errors", [])


class ApiError(DispatchError):
    """The API answered with an error body (or an error status without one)."""

    kind = "api_error"


class TransientError(ApiError):
    kind = "transient"


class PairRateLimited(TransientError):
    kind = "pair_rate_limited"


class PermanentError(ApiError):
    kind = "permanent"


class AccountError(ApiError):
    kind = "account"


class AmbiguousError(DispatchError):
    """The request may have reached the API but no answer came back: it may have been sent."""

    kind = "ambiguous"


class RetriesExhausted(DispatchError):
    """Transient failures until the attempt or age bound; carries the last API error's data."""

    kind = "exhausted"


class ExpiredError(DispatchError):
    """The intent outlived DISPATCH_MAX_AGE before it could be sent."""

    kind = "expired"


class EnqueueError(DispatchError):
    """The broker could not be reached within the publish retry bound: the intent was not enqueued."""

    kind = "not_enqueued"


def classify(code: int | None, http_status: int) -> type[ApiError]:
    """Which exception a response maps to: by Meta code first, by status only when there is no code."""
    if code is not None:
        if code in TRANSIENT_CODES:
            return TransientError
        if code == PAIR_RATE_LIMIT_CODE:
            return PairRateLimited
        if code in ACCOUNT_CODES:
            return AccountError
        return PermanentError
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
    title = err.get("error_user_title") or err.get("title") or TITLES.get(code or -1) or f"HTTP {http_status}"
    message = err.get("message") or f"HTTP {http_status}"
    details = (err.get("error_data") or {}).get("details") if isinstance(err.get("error_data"), dict) else None
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
