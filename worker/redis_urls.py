"""The Redis URLs of a deployment, parsed before anything connects (pure).

A URL names one Redis server (`redis://`, `rediss://`, `unix://`) or a set of Sentinels that
name the current primary (`sentinel://host:26379;sentinel://host2:26379/0`, kombu's and Celery's
own form: one `sentinel://` per Sentinel, `;` between them, the database and the primary's
password on the first). Every client of the project (broker, results, state, beat, the web
process) follows the same rules, so a URL one of them could not use is refused at start, with
one line that names the variable and why, before any of them tries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

SEPARATOR = ";"


class Scheme(StrEnum):
    REDIS = "redis"
    REDISS = "rediss"
    UNIX = "unix"
    SENTINEL = "sentinel"


REDIS_SCHEMES = frozenset(Scheme)
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


class RedisUrlError(ValueError):
    """A URL the project cannot use: the variable and why, never the URL (it may hold a password)."""


@dataclass(frozen=True)
class Sentinels:
    """A Sentinel URL: where to ask for the primary, and what to connect to it with."""

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None  # the primary's (requirepass); the Sentinels' own is a setting

    def master_kwargs(self) -> dict[str, Any]:
        """What the primary's connections need beside their address."""
        extra: dict[str, Any] = {"db": self.db}
        if self.username:
            extra["username"] = self.username
        if self.password:
            extra["password"] = self.password
        return extra


DEFAULT_SENTINEL_PORT = 26379


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_redis(url: str) -> bool:
    """Redis, directly or through Sentinels."""
    return scheme_of(url) in REDIS_SCHEMES


def is_sentinel(url: str) -> bool:
    return scheme_of(url) == Scheme.SENTINEL


def sentinels(url: str, variable: str) -> Sentinels:
    """The Sentinels a `sentinel://` URL names; RedisUrlError, naming `variable`, when it cannot be used."""
    parts = [part.strip() for part in url.split(SEPARATOR) if part.strip()]
    hosts: list[tuple[str, int]] = []
    first = None
    for part in parts:
        if scheme_of(part) != Scheme.SENTINEL:
            raise RedisUrlError(
                f"{variable}: every address of a Sentinel URL starts with sentinel:// "
                f"(found {scheme_of(part) or 'no scheme'}://); separate them with ';'"
            )
        try:
            split = urlsplit(part)
            port = split.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            raise RedisUrlError(f"{variable}: a Sentinel's port is not a number") from None
        if not split.hostname:
            raise RedisUrlError(f"{variable}: a Sentinel address has no host (sentinel://host:26379)")
        hosts.append((split.hostname, port))
        first = first or split
    assert first is not None  # the URL starts with sentinel://, so one part at least
    db_text = first.path.strip("/") or "0"
    if not db_text.isdigit():
        raise RedisUrlError(f"{variable}: the database after the first Sentinel is not a number")
    for part in parts[1:]:
        other = urlsplit(part).path.strip("/")
        if other and other != db_text:
            raise RedisUrlError(f"{variable}: the Sentinel addresses name different databases")
    return Sentinels(
        hosts=tuple(hosts),
        db=int(db_text),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
    )


def check_redis(url: str, variable: str) -> None:
    """RedisUrlError unless `url` names a Redis server or its Sentinels in a form redis-py reads."""
    scheme = scheme_of(url)
    if scheme not in REDIS_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in Scheme)
        raise RedisUrlError(f"{variable}: {scheme or 'no'} scheme; a Redis URL starts with one of {allowed}")
    if scheme == Scheme.SENTINEL:
        sentinels(url, variable)
        return
    if SEPARATOR in url:
        raise RedisUrlError(f"{variable}: several addresses are a Sentinel URL (sentinel://host:26379;...)")
    if scheme == Scheme.UNIX:
        return
    try:
        split = urlsplit(url)
        split.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise RedisUrlError(f"{variable}: the port is not a number") from None
    if not split.hostname:
        raise RedisUrlError(f"{variable}: no host ({scheme}://host:6379/0)")
    db = split.path.strip("/")
    if db and not db.isdigit():
        raise RedisUrlError(f"{variable}: the database ({scheme}://host:6379/<number>) is not a number")


def check_deployment(redis_url: str, broker_url: str | None, result_backend: str | None) -> None:
    """Every URL variable as the processes will use it: REDIS_URL is Redis; the broker is Redis or
    RabbitMQ (kombu reads `amqp://a;amqp://b` as hosts to fail over to); the results are in Redis.
    RedisUrlError for the first that is not."""
    check_redis(redis_url, "REDIS_URL")
    if broker_url is not None and scheme_of(broker_url) not in AMQP_SCHEMES:  # RabbitMQ's: kombu's to read
        try:
            check_redis(broker_url, "CELERY_BROKER_URL")
        except RedisUrlError as exc:
            raise RedisUrlError(f"{exc} (or amqp:// for RabbitMQ)") from None
    if result_backend is not None:
        check_redis(result_backend, "CELERY_RESULT_BACKEND")
