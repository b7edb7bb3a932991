"""The callbacks file (`DISPATCH_CALLBACKS_FILE`, TOML), one table per API key name:

    [callbacks.shop]                       # the API key's name (DISPATCH_API_KEYS)
    url = "https://shop.example.com/hooks/whatsapp"
    secret_env = "SHOP_CALLBACK_SECRET"    # or secret_file = "/run/secrets/shop-callback"

The secret is never in the file, as senders' tokens are not (worker.delivery.senders); it is read
when the file is loaded and kept in memory only. A broken file raises CallbacksError naming the
file, the key and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_validator, model_validator

from worker.ops import logs

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as worker.web.auth names API keys


class CallbacksError(ValueError):
    """A callbacks file that cannot be used; names the file, key and field, never a secret."""


class CallbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    secret_env: str | None = None
    secret_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlparse(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("no user or password in the URL (the signature authenticates)")
        return url

    @model_validator(mode="after")
    def _one_secret_source(self) -> CallbackSpec:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret_env (an environment variable) or secret_file")
        return self

    def secret(self) -> SecretStr:
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env, "").strip()
            if not value:
                raise ValueError(f"secret_env: the environment variable {self.secret_env} is not set")
            return SecretStr(value)
        assert self.secret_file is not None
        try:
            value = self.secret_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"secret_file: cannot read {self.secret_file}: {exc.strerror}") from None
        if not value:
            raise ValueError(f"secret_file: {self.secret_file} is empty")
        return SecretStr(value)


@dataclass(frozen=True)
class Callback:
    """Where one API key's events go, and the secret they are signed with."""

    key: str
    url: str
    secret: SecretStr


def load_callbacks(path: Path) -> dict[str, Callback]:
    """Each API key name's callback; CallbacksError names the file, key and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CallbacksError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CallbacksError(f"{path}: {exc}") from None
    tables = data.get("callbacks")
    if set(data) != {"callbacks"} or not isinstance(tables, dict):
        raise CallbacksError(f"{path}: expected [callbacks.KEY_NAME] tables and nothing else")
    found = {}
    for key, table in tables.items():
        if not KEY_NAME.match(key):
            raise CallbacksError(f"{path}: key {key!r}: an API key name (letters, digits, '.', '-', '_')")
        try:
            if not isinstance(table, dict):
                raise ValueError("expected a table with url and secret_env or secret_file")
            spec = CallbackSpec.model_validate(table)
            secret = spec.secret()
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'table'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise CallbacksError(f"{path}: key {key!r}: {problems}") from None
        except ValueError as exc:
            raise CallbacksError(f"{path}: key {key!r}: {exc}") from None
        logs.register_secret(secret.get_secret_value())
        found[key] = Callback(key, spec.url, secret)
    return found
