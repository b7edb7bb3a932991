"""The web process's app: the HTTP API (`worker.web.api`), and here the webhook routes (Meta's
verification handshake, signed status and inbound-message POSTs) and health.

A POST is answered 200 only once its body is in the Redis inbox (`worker.statuses.inbox`), and
always within ANSWER_WITHIN seconds (Interakt disables a webhook after repeated slow answers).
Nothing is applied here: workers do that. Refusals, each counted by reason and stored nowhere:
401 bad or missing signature, 413 body over 1 MiB, 400 not JSON (or nested deeper than the
parser goes, or holding a number that is not finite: NaN, Infinity, 1e400), 503 Redis unreachable
(the sender retries later). A body of a shape this receiver does not know gets 200 and a log record,
so the sender does not retry it forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

import redis.asyncio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from worker.ops import metrics
from worker.ops.logs import get_logger
from worker.redis_conn import connect_async
from worker.settings import Settings, get_settings
from worker.statuses import inbox, signature
from worker.statuses.events import parse
from worker.web import api
from worker.web.auth import RateLimit, load_keys
from worker.web.body import MAX_BODY, parse_json, read_body
from worker.web.enqueue import Coalescer, enqueuer
from worker.web.openapi import MAX_BATCH

log = get_logger("whatsapp_dispatch.web")

# Interakt wants an answer within 3 s; leave room for the network on both sides.
ANSWER_WITHIN = 2.5
REDIS_TIMEOUT = 1.0


class Rejected(StrEnum):
    """Why a webhook request was refused or dropped: the `reason` of wa_webhook_rejected_total."""

    SIGNATURE = "signature"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    UNKNOWN_SHAPE = "unknown_shape"
    REDIS_UNAVAILABLE = "redis_unavailable"


def _refuse(reason: Rejected, status: int, message: str, **fields: str) -> JSONResponse:
    metrics.WEBHOOK_REJECTED.labels(reason).inc()
    level = log.error if status >= 500 else log.warning
    level("webhook_rejected", reason=reason, http_status=status, **fields)
    return JSONResponse({"error": message, "reason": reason}, status_code=status)


def _redis(request: Request) -> redis.asyncio.Redis:
    return request.app.state.redis


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def handshake(request: Request) -> Response:
    """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
    expected = _settings(request).webhook_verify_token
    params = request.query_params
    given = params.get("hub.verify_token", "")
    if (
        expected
        and params.get("hub.mode") == "subscribe"
        and signature.same(given, expected.get_secret_value())
    ):
        return PlainTextResponse(params.get("hub.challenge", ""))
    log.warning("webhook_handshake_refused", mode=params.get("hub.mode"))
    return PlainTextResponse("forbidden", status_code=403)


async def receive(request: Request) -> Response:
    received = time.time()
    body = await read_body(request)
    if body is None:
        return _refuse(Rejected.TOO_LARGE, 413, f"body over {MAX_BODY} bytes")
    if not signature.verify(body, request.headers.get(signature.HEADER), _settings(request).webhook_secrets):
        return _refuse(Rejected.SIGNATURE, 401, f"missing or wrong {signature.HEADER}")
    try:
        doc = parse_json(body)
    except ValueError:
        return _refuse(Rejected.MALFORMED, 400, "the body is not JSON")
    parsed = parse(doc, received)
    if parsed.source is None or not parsed.events:
        metrics.WEBHOOK_REJECTED.labels(Rejected.UNKNOWN_SHAPE).inc()
        keys = sorted(doc)[:10] if isinstance(doc, dict) else []  # the keys only: bodies hold numbers
        log.warning("webhook_unknown_shape", keys=keys, source=parsed.source, size=len(body))
        return JSONResponse({"ok": True, "stored": False})
    try:
        await asyncio.wait_for(inbox.accept(_redis(request), body, parsed.source, received), ANSWER_WITHIN)
    except (RedisError, OSError, TimeoutError) as exc:
        return _refuse(Rejected.REDIS_UNAVAILABLE, 503, "try again later", error=type(exc).__name__)
    metrics.WEBHOOK_RECEIVED.labels(parsed.source, "status").inc(len(parsed.statuses))
    metrics.WEBHOOK_RECEIVED.labels(parsed.source, "message").inc(len(parsed.messages))
    metrics.WEBHOOK_ACCEPT.labels(parsed.source).observe(max(0.0, time.time() - received))
    return JSONResponse({"ok": True, "stored": True})


async def metrics_page(request: Request) -> Response:
    """Prometheus's text, served at /metrics itself: the mount it replaces redirected /metrics to
    a URL built from the client's Host header."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    try:
        await asyncio.wait_for(_redis(request).ping(), ANSWER_WITHIN)
    except (RedisError, OSError, TimeoutError):
        return JSONResponse({"ok": False, "redis": False}, status_code=503)
    return JSONResponse({"ok": True, "redis": True})


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # No retries inside the client: a Redis that does not answer within REDIS_TIMEOUT is a 503
        # now (the sender retries), not a slow answer that makes Interakt give up on the webhook.
        app.state.redis = connect_async(
            settings.state_redis_url,
            settings,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            retry_on_timeout=False,
            max_connections=256,
        )
        app.state.settings = settings
        app.state.api_keys = load_keys(settings)
        app.state.api_rate = RateLimit(app.state.redis, settings.api_rate_limit)
        app.state.enqueuer = enqueuer(settings)
        app.state.singles = Coalescer(app.state.enqueuer, MAX_BATCH)
        yield
        await app.state.redis.aclose()

    return Starlette(
        routes=[
            Route("/webhooks/whatsapp", handshake, methods=["GET"]),
            Route("/webhooks/whatsapp", receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            Route("/metrics/", metrics_page, methods=["GET"]),
            *api.routes(),
        ],
        lifespan=lifespan,
    )
