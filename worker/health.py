"""Health checks for probes and operators; none of them sends a message."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import redis

from worker.settings import Settings


def check_redis(settings: Settings) -> dict[str, Any]:
    started = time.perf_counter()
    redis.Redis.from_url(settings.celery_broker_url, socket_connect_timeout=3, socket_timeout=3).ping()
    return {"latency_ms": round((time.perf_counter() - started) * 1000, 1)}


def check_credentials(settings: Settings) -> dict[str, Any]:
    missing = [name for name, value in (("INTERAKT_ACCESS_TOKEN", settings.access_token),
                                         ("INTERAKT_WABA_ID", settings.waba_id),
                                         ("INTERAKT_PHONE_NUMBER_ID", settings.phone_number_id)) if not value]  # fmt: skip
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}")
    return {"phone_number_id": settings.phone_number_id}


def check_workers(settings: Settings) -> dict[str, Any]:
    from worker import app

    replies = app.control.ping(timeout=2.0)
    if not replies:
        raise RuntimeError("no worker answered a ping within 2 s")
    return {"workers": sorted(name for reply in replies for name in reply)}


def check_api(settings: Settings) -> dict[str, Any]:
    """DNS and a TCP (and TLS, for https) connection to the API host: no request is sent."""
    url = urlparse(settings.api_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    started = time.perf_counter()
    address = socket.getaddrinfo(url.hostname, port, type=socket.SOCK_STREAM)[0][4]
    with socket.create_connection((url.hostname, port), timeout=5) as sock:
        if url.scheme == "https":
            with ssl.create_default_context().wrap_socket(sock, server_hostname=url.hostname) as tls:
                version = tls.version()
        else:
            version = "plain http"
    return {"host": url.hostname, "address": address[0], "tls": version,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1)}  # fmt: skip


def check_breaker(settings: Settings) -> dict[str, Any]:
    from worker.services import services

    status = services().send.breaker.status()
    if status.get("state") == "open":
        raise RuntimeError(f"sending is paused: {status.get('message')} (code {status.get('code') or '-'})")
    return {"state": "closed"}


CHECKS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "redis": check_redis, "credentials": check_credentials, "workers": check_workers, "api": check_api,
    "breaker": check_breaker,
}  # fmt: skip


def run(settings: Settings, names: list[str]) -> dict[str, dict[str, Any]]:
    results = {}
    for name in names:
        try:
            results[name] = {"ok": True, **CHECKS[name](settings)}
        except Exception as exc:  # noqa: BLE001 - a failed check is a result, not a crash
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return results
