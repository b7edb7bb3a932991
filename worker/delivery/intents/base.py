"""What every intent model shares: frozen API objects that refuse unknown fields, the field types
reused across families, and the validation that turns pydantic's errors into (field, reason)."""

from __future__ import annotations

import functools
from typing import Annotated, Any, TypeVar
from urllib.parse import urlparse

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from worker.delivery.errors import InvalidIntent


class ApiObject(BaseModel):
    """An object of the API: immutable, and a typo'd field fails at enqueue, not at Meta."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def http_url(url: str) -> str:
    """A public http(s) URL (Meta fetches links itself and takes no other scheme)."""
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
        raise ValueError("must be a public http(s) URL")
    return url


Short = Annotated[str, Field(min_length=1)]
HttpUrl = Annotated[str, Field(min_length=1), AfterValidator(http_url)]
SENDER_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SenderName = Annotated[str, Field(pattern=SENDER_NAME)]
Caption = Annotated[str, Field(max_length=1024)]  # media captions
BodyText = Annotated[str, Field(min_length=1, max_length=1024)]  # interactive bodies
HeaderText = Annotated[str, Field(min_length=1, max_length=60)]  # interactive headers and footers


@functools.lru_cache(maxsize=4096)
def normalize_phone(number: str) -> str:
    """E.164 for a phone number or wa_id (digits with country code, '+' optional). Cached: a
    campaign recipient's number is parsed when its row becomes an intent and again when the
    intent is sent, and parsing cost 7 % of a campaign send's CPU (py-spy)."""
    raw = number.strip()
    try:
        parsed = phonenumbers.parse(raw if raw.startswith("+") else f"+{raw}", None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number with a country code (E.164, e.g. +919999595313)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def field_errors(exc: ValidationError, prefix: str = "", whole: str = "intent") -> list[tuple[str, str]]:
    """(field, reason) for each of pydantic's errors; `whole` names an error of the whole object."""
    found = []
    for error in exc.errors(include_input=False, include_url=False):
        parts = [
            str(p)
            for p in error["loc"]
            if not (isinstance(p, str) and p.startswith(("function-", "constrained-")))
        ]
        found.append((prefix + (".".join(parts) or whole), error["msg"].removeprefix("Value error, ")))
    return found


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    """`model` from `data`, or InvalidIntent naming each bad field (under `prefix`) and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidIntent.from_fields(field_errors(exc, prefix)) from None
