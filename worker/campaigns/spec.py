"""Campaign files: one message to many recipients on a schedule. Parsing and expansion, no I/O but the file.

A campaign is a TOML file (stdlib `tomllib`, so errors carry the line and column):

    name = "friday-sale"
    timezone = "Asia/Kolkata"
    throttle = 50                      # optional: at most this many messages/s for this campaign
    sender = "marketing"               # optional: a sender of DISPATCH_SENDERS (else `default`)

    [schedule]                         # exactly one of cron / every / at
    cron = "0 9 * * FRI"               # minute hour day-of-month month day-of-week
    # every = 3600                     # seconds
    # at = "2026-12-01T09:00:00"       # once, in `timezone`

    [window]                           # optional: only between these times in the recipient's zone
    start = "09:00"
    end = "21:00"

    [audience]
    csv = "customers.csv"              # relative to this file; or: numbers = ["+9199...", ...]
    phone_column = "phone"

    [message]                          # send_message's keyword arguments without `to`;
    type = "template"                  # "{column}" in any string is filled from the recipient's row
    template = { name = "friday_sale", language = { code = "en_US", policy = "deterministic" },
                 components = [{ type = "body", parameters = [{ type = "text", text = "{first_name}" }] }] }
"""

from __future__ import annotations

import csv
import string
import tomllib
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers.timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.delivery.errors import InvalidIntent
from worker.delivery.intents import SenderName, field_errors, normalize_phone, parse_intent

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class CampaignError(ValueError):
    """A campaign file that cannot be used: the message names the file and the line or field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Model):
    cron: str | None = None
    every: Annotated[float, Field(gt=0)] | None = None
    at: datetime | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Schedule:
        if sum(v is not None for v in (self.cron, self.every, self.at)) != 1:
            raise ValueError("give exactly one of 'cron', 'every' (seconds) or 'at' (a date and time)")
        if self.cron is not None:
            cron_fields(self.cron)
        return self


class Window(_Model):
    start: time
    end: time


class Audience(_Model):
    csv: str | None = None
    numbers: list[str] | None = None
    phone_column: str = "phone"

    @model_validator(mode="after")
    def _one_source(self) -> Audience:
        if (self.csv is None) == (self.numbers is None):
            raise ValueError("give exactly one of 'csv' (a file) or 'numbers' (a list)")
        return self


class Campaign(_Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    timezone: str = "UTC"
    schedule: Schedule
    window: Window | None = None
    throttle: Annotated[float, Field(gt=0)] | None = None
    sender: SenderName | None = None  # which number sends it (DISPATCH_SENDERS); `default` if none
    audience: Audience
    message: dict[str, Any]
    rows: list[dict[str, str]] = Field(default_factory=list)  # the audience, read when the file is loaded

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
        return zone

    @field_validator("message")
    @classmethod
    def _no_recipient(cls, message: dict[str, Any]) -> dict[str, Any]:
        if "to" in message or "idempotency_key" in message:
            raise ValueError("'to' and 'idempotency_key' come from the audience and the run, not the message")
        return message

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --- cron ---------------------------------------------------------------------------------------

_NAMES = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
    "sun": 0,
    "mon": 1,
    "tue": 2,
    "wed": 3,
    "thu": 4,
    "fri": 5,
    "sat": 6,
}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]  # weekday 7 is Sunday too


def cron_fields(expr: str) -> list[list[int] | None]:
    """Five cron fields expanded to sorted value lists (None for '*'); ValueError names a bad field."""
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {len(parts)}: {expr!r}")
    out: list[list[int] | None] = []
    for part, (low, high), label in zip(
        parts, _RANGES, ("minute", "hour", "day", "month", "weekday"), strict=True
    ):
        if part == "*":
            out.append(None)
            continue
        values: set[int] = set()
        for item in part.lower().split(","):
            body, _, step = item.partition("/")
            try:
                if body == "*":
                    first, last = low, high
                elif "-" in body:
                    a, b = body.split("-", 1)
                    first, last = _NAMES.get(a) or int(a), _NAMES.get(b) or int(b)
                else:
                    first = last = _NAMES[body] if body in _NAMES else int(body)
                stride = int(step) if step else 1
            except ValueError:
                raise ValueError(f"cron {label} field {part!r} is not understood") from None
            if not (low <= first <= last <= high) or stride < 1:
                raise ValueError(f"cron {label} field {part!r} is outside {low}-{high}")
            values.update(v % 7 if label == "weekday" else v for v in range(first, last + 1, stride))
        out.append(sorted(values))
    return out


# --- loading ------------------------------------------------------------------------------------


def _read_rows(audience: Audience, base: Path) -> list[dict[str, str]]:
    if audience.csv is None:
        return [{audience.phone_column: n} for n in audience.numbers or []]
    path = (base / audience.csv).resolve()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if audience.phone_column not in (reader.fieldnames or []):
                raise CampaignError(
                    f"{path}: no '{audience.phone_column}' column (columns: {reader.fieldnames})"
                )
            return [dict(row) for row in reader]
    except OSError as exc:
        raise CampaignError(f"audience.csv: cannot read {path}: {exc.strerror}") from None


def load_campaign(path: Path) -> Campaign:
    """Parse and validate a campaign file, reading its audience; CampaignError says what and where."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CampaignError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{path}: {exc}") from None  # tomllib names the line and column
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {reason}" for field, reason in field_errors(exc, whole="file"))
        raise CampaignError(f"{path}: {problems}") from None
    campaign = campaign.model_copy(update={"rows": _read_rows(campaign.audience, path.parent)})
    _check_message(campaign)
    return campaign


def _check_message(campaign: Campaign) -> None:
    """The message must be a valid intent once filled in: try it with placeholder values."""
    sample = {name: "x" for name in placeholders(campaign.message)}
    try:
        parse_intent({**fill(campaign.message, sample), "to": "+919999595313"})
    except InvalidIntent as exc:
        raise CampaignError(f"message: {exc.message.removeprefix('invalid message intent: ')}") from None


# --- expansion ----------------------------------------------------------------------------------


def placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        return {name for _, name, _, _ in string.Formatter().parse(value) if name}
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def fill(value: Any, row: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(row)
    if isinstance(value, dict):
        return {k: fill(v, row) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, row) for v in value]
    return value


class BadRow(ValueError):
    """A recipient that cannot be messaged: reported, not sent, and the run goes on."""


def recipient_of(campaign: Campaign, row: dict[str, str]) -> str:
    try:
        return normalize_phone(row.get(campaign.audience.phone_column) or "")
    except ValueError as exc:
        raise BadRow(f"{campaign.audience.phone_column}: {exc}") from None


def intent_for(campaign: Campaign, row: dict[str, str], run_id: str) -> dict[str, Any]:
    """The send_message kwargs for one row, with the key `campaign:run:recipient`."""
    to = recipient_of(campaign, row)
    missing = sorted(name for name in placeholders(campaign.message) if not row.get(name))
    if missing:
        raise BadRow(f"missing variable {', '.join(missing)}")
    intent = {**fill(campaign.message, row), "to": to, "idempotency_key": run_key(campaign.name, run_id, to)}
    if campaign.sender:
        intent["sender"] = campaign.sender
    try:
        parse_intent(intent)
    except InvalidIntent as exc:
        raise BadRow(exc.message.removeprefix("invalid message intent: ")) from None
    return intent


def run_key(name: str, run_id: str, to: str) -> str:
    return f"campaign:{name}:{run_id}:{to}"


def in_window(campaign: Campaign, to: str, now: datetime) -> bool:
    """Is it within the send window in the recipient's zone (from the number; else the campaign's)?"""
    if campaign.window is None:
        return True
    zones = [
        z
        for z in phonenumbers.timezone.time_zones_for_number(phonenumbers.parse(to))
        if "/" in z and z != "Etc/Unknown"
    ]
    local = now.astimezone(ZoneInfo(zones[0]) if zones else campaign.zone).time()
    start, end = campaign.window.start, campaign.window.end
    return start <= local < end if start <= end else (local >= start or local < end)
