"""Reading a request body with a size cap, for the webhooks and the API alike."""

from __future__ import annotations

from starlette.requests import Request

MAX_BODY = 1024 * 1024
DRAIN_LIMIT = 8 * MAX_BODY


async def read_body(request: Request) -> bytes | None:
    """The raw body, or None when it is over MAX_BODY. An oversized body is read on (and
    dropped) up to DRAIN_LIMIT, so an ordinary client, which writes its whole body before it
    reads the answer, gets the 413 rather than a reset connection; past that it is cut off."""
    body = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen <= MAX_BODY:
            body += chunk
        elif seen > DRAIN_LIMIT:
            break
    return bytes(body) if seen <= MAX_BODY else None
