"""Health checks for probes and operators; none of them sends a message.

`Checks` is handed what it looks at (the settings, a way to ping the workers, the breaker), so
this module needs neither the Celery app nor the services.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlparse

from worker.redis_conn import connect
from worker.settings import Settings

CHECK_NAMES = ("redis", "credentials", "workers", "api", "breaker")


class BreakerState(Protocol):
    """What the breaker check reads (worker.delivery.breaker.Breaker is one): ops looks at the
    send path, it never imports it."""

    def status(self) -> dict[str, Any]: ...


class Checks:
    def __init__(
        self, settings: Settings, ping_workers: Callable[[float], list[dict[str, Any]]], breaker: BreakerState
    ) -> None:
        self.settings = settings
        self.ping_workers = ping_workers
        self._breaker = breaker

    def redis(self) -> dict[str, Any]:
        started = time.perf_counter()
        connect(
            self.settings.celery_broker_url,
            self.settings,
            "CELERY_BROKER_URL",
            socket_connect_timeout=3,
            socket_timeout=3,
        ).ping()
        return {"latency_ms": round((time.perf_counter() - started) * 1000, 1)}

    def credentials(self) -> dict[str, Any]:
        s = self.settings
        given = {
            "INTERAKT_ACCESS_TOKEN": s.access_token,
            "INTERAKT_WABA_ID": s.waba_id,
            "INTERAKT_PHONE_NUMBER_ID": s.phone_number_id,
        }
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}")
        return {"phone_number_id": s.phone_number_id}

    def workers(self) -> dict[str, Any]:
        replies = self.ping_workers(2.0)
        if not replies:
            raise RuntimeError("no worker answered a ping within 2 s")
        return {"workers": sorted(name for reply in replies for name in reply)}

    def api(self) -> dict[str, Any]:
        """DNS and a TCP (and TLS, for https) connection to the API host: no request is sent."""
        url = urlparse(self.settings.api_url)
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        started = time.perf_counter()
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
        with socket.create_connection((host, port), timeout=5) as sock:
            if url.scheme == "https":
                with ssl.create_default_context().wrap_socket(sock, server_hostname=host) as tls:
                    version = tls.version()
            else:
                version = "plain http"
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return {"host": host, "address": address[0], "tls": version, "latency_ms": latency_ms}

    def breaker(self) -> dict[str, Any]:
        status = self._breaker.status()
        if status.get("state") == "open":
            raise RuntimeError(
                f"sending is paused: {status.get('message')} (code {status.get('code') or '-'})"
            )
        return {"state": "closed"}

    def run(self, names: list[str]) -> dict[str, dict[str, Any]]:
        results = {}
        for name in names:
            try:
                results[name] = {"ok": True, **getattr(self, name)()}
            except Exception as exc:  # noqa: BLE001 - a failed check is a result, not a crash
                results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return results
