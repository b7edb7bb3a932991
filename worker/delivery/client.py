"""HTTP to Interakt's Cloud API: one pooled `requests.Session` per process, timeouts, error parsing.

Nothing here retries or logs; it turns every outcome into either a response body or one
of the exceptions in `worker.delivery.errors`, separating "not sent" (safe to retry) from
"may have been sent" (ambiguous).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from worker.delivery.errors import AmbiguousError, TransientError, api_error
from worker.settings import Settings


@dataclass(frozen=True)
class ApiResponse:
    http_status: int
    body: dict[str, Any]
    latency_ms: float

    @property
    def wamid(self) -> str | None:
        messages = self.body.get("messages") or [{}]
        return messages[0].get("id")

    @property
    def wa_id(self) -> str | None:
        contacts = self.body.get("contacts") or [{}]
        return contacts[0].get("wa_id")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _refused_before_sending(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection never opened, so the API cannot have seen the request."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class InteraktClient:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.messages_url
        self.api_url = settings.api_url.rstrip("/")
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.session = requests.Session()
        # Proxies from the environment, read once: with trust_env every request re-scans os.environ.
        self.session.proxies.update(requests.utils.get_environ_proxies(self.url))
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.http_pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        token = settings.access_token.get_secret_value() if settings.access_token else ""
        # Content-Type per request: a multipart upload sets its own.
        self.session.headers.update({"x-access-token": token, "x-waba-id": settings.waba_id})
        self._message_request = self.session.prepare_request(
            requests.Request("POST", self.url, headers={"Content-Type": "application/json"})
        )

    def post(self, payload: dict[str, Any]) -> ApiResponse:
        """POST to /{phone_number_id}/messages; raise TransientError, AmbiguousError or an ApiError."""
        # A copy of the prepared request with only the body set: preparing URL, headers and
        # session settings anew cost as much CPU as the rest of the HTTP call (py-spy).
        request = self._message_request.copy()
        request.prepare_body(json.dumps(payload), None)
        return self._send(request)

    def call(self, method: str, url_or_path: str, **kwargs: Any) -> ApiResponse:
        """Any API call (`url_or_path` relative to INTERAKT_API_URL, e.g. `{waba_id}/message_templates`),
        with the same timeouts and the same exceptions as `post`."""
        url = url_or_path if "://" in url_or_path else f"{self.api_url}/{url_or_path.lstrip('/')}"
        return self._send(self.session.prepare_request(requests.Request(method, url, **kwargs)))

    def _send(self, request: requests.PreparedRequest) -> ApiResponse:
        started = time.perf_counter()
        session = self.session
        try:
            resp = session.send(
                request,
                timeout=self.timeout,
                proxies=session.proxies,
                verify=session.verify,
                cert=session.cert,
                stream=False,
            )
        except requests.ConnectTimeout as exc:
            raise TransientError("connect timeout: the API was not reached", _net_info(exc)) from None
        except requests.ReadTimeout as exc:
            raise AmbiguousError(
                f"no answer within {self.timeout[1]}s after the request was sent: it may have been delivered",
                _net_info(exc),
            ) from None
        except requests.ConnectionError as exc:
            if _refused_before_sending(exc):
                raise TransientError("connection refused: the API was not reached", _net_info(exc)) from None
            raise AmbiguousError(
                "connection dropped after the request was sent: it may have been delivered", _net_info(exc)
            ) from None
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not 200 <= resp.status_code < 300:
            raise api_error(resp.status_code, body, parse_retry_after(resp.headers.get("Retry-After")))
        if not isinstance(body, dict):
            body = {}
        return ApiResponse(resp.status_code, body, latency_ms)


def _net_info(exc: Exception) -> dict[str, Any]:
    return {"code": None, "title": type(exc).__name__, "message": str(exc)[:500]}
