"""Senders: the WhatsApp numbers (and accounts) one deployment sends from, each with its own
credentials, limits and breaker.

`DISPATCH_SENDERS` names a TOML file, one table per sender:

    [senders.support]
    phone_number_id = "1234567890"
    waba_id = "998877"
    token_env = "SUPPORT_TOKEN"        # or token_file = "/run/secrets/support"
    rate_limit = 1000                  # this number's throughput tier, msg/s
    # optional: api_url, pair_interval, pair_burst, daily_limit

A token is never written in the file (a `token` key is refused): it is read from the named
environment variable or file when the file is loaded. The INTERAKT_* variables define the sender
`default`, which intents without a `sender` use; a file may define `default` itself instead.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from worker.delivery.errors import InvalidIntent
from worker.delivery.intents import SENDER_NAME, field_errors
from worker.settings import Settings

DEFAULT = "default"


class SendersError(ValueError):
    """A senders file that cannot be used: the message names the file, the sender and the field."""


class SenderSpec(BaseModel):
    """One `[senders.NAME]` table, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone_number_id: Annotated[str, Field(min_length=1)]
    waba_id: Annotated[str, Field(min_length=1)]
    token_env: str | None = None
    token_file: Path | None = None
    rate_limit: Annotated[float, Field(gt=0, le=1000)] = 80.0
    api_url: str | None = None
    pair_interval: Annotated[float, Field(ge=0)] | None = None
    pair_burst: Annotated[int, Field(ge=1)] | None = None
    daily_limit: Annotated[int, Field(gt=0)] | None = None  # Meta's messaging limit of its waba_id

    @model_validator(mode="after")
    def _one_token_source(self) -> SenderSpec:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env (an environment variable) or token_file")
        return self

    def token(self) -> SecretStr:
        if self.token_env is not None:
            value = os.environ.get(self.token_env)
            if not value:
                raise ValueError(f"token_env: the environment variable {self.token_env} is not set")
            return SecretStr(value)
        assert self.token_file is not None
        try:
            return SecretStr(self.token_file.read_text().strip())
        except OSError as exc:
            raise ValueError(f"token_file: cannot read {self.token_file}: {exc.strerror}") from None


def sender_settings(settings: Settings, spec: SenderSpec) -> Settings:
    """The deployment's settings with this sender's number, account, token and limits."""
    update: dict[str, Any] = {
        "phone_number_id": spec.phone_number_id,
        "waba_id": spec.waba_id,
        "access_token": spec.token(),
        "rate_limit": spec.rate_limit,
    }
    optional = {
        "api_url": spec.api_url,
        "pair_interval": spec.pair_interval,
        "pair_burst": spec.pair_burst,
        "daily_limit": spec.daily_limit,
    }
    update.update({k: v for k, v in optional.items() if v is not None})
    return settings.model_copy(update=update)


def load_senders(path: Path, settings: Settings) -> dict[str, Settings]:
    """Each sender's settings from a senders file; SendersError names the file, sender and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SendersError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SendersError(f"{path}: {exc}") from None
    tables = data.get("senders")
    if set(data) != {"senders"} or not isinstance(tables, dict) or not tables:
        raise SendersError(f"{path}: expected [senders.NAME] tables and nothing else")
    found: dict[str, Settings] = {}
    for name, table in tables.items():
        if not isinstance(table, dict) or not _is_name(name):
            raise SendersError(f"{path}: sender {name!r}: a name of lowercase letters, digits, - and _")
        if "token" in table:
            raise SendersError(
                f"{path}: sender {name!r}: token: a token is never written in this file; "
                "name an environment variable (token_env) or a file (token_file)"
            )
        try:
            found[name] = sender_settings(settings, SenderSpec.model_validate(table))
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {reason}" for field, reason in field_errors(exc, whole="sender"))
            raise SendersError(f"{path}: sender {name!r}: {problems}") from None
        except ValueError as exc:
            raise SendersError(f"{path}: sender {name!r}: {exc}") from None
    return found


def _is_name(name: str) -> bool:
    return re.fullmatch(SENDER_NAME, name) is not None


def senders(settings: Settings) -> dict[str, Settings]:
    """Every sender: the file's (DISPATCH_SENDERS), and `default` from the INTERAKT_* variables
    unless the file defines it (or a file is set and INTERAKT_PHONE_NUMBER_ID is not)."""
    found = load_senders(settings.senders_file, settings) if settings.senders_file else {}
    if DEFAULT not in found and (settings.phone_number_id or not found):
        found[DEFAULT] = settings
    return found


def sender_names(settings: Settings) -> list[str]:
    """The senders' names, without reading any token: what a producer checks an intent against."""
    return _names(settings.senders_file, bool(settings.phone_number_id))


@lru_cache(maxsize=4)
def _names(senders_file: Path | None, interakt_number: bool) -> list[str]:
    names = set()
    if senders_file:
        try:
            tables = tomllib.loads(senders_file.read_text(encoding="utf-8")).get("senders") or {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SendersError(f"{senders_file}: {exc}") from None
        names = set(tables)
    if DEFAULT not in names and (interakt_number or not names):
        names.add(DEFAULT)
    return sorted(names)


def unknown_sender(name: str, known: list[str]) -> InvalidIntent:
    return InvalidIntent.from_fields(
        [("sender", f"unknown sender {name!r}; known senders: {', '.join(known)}")]
    )
