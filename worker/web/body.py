"""Reading a request body with a size cap, and its JSON, for the webhooks and the API alike."""

from __future__ import annotations

import json
import math
from typing import Any

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


def parse_json(body: bytes) -> Any:
    """The body's JSON value; ValueError when it is not JSON (nor UTF-8), nests deeper than the
    parser goes (its RecursionError, which must never reach the route as a 500), or holds a
    number that is not finite: `NaN`, `Infinity` (which JSON does not have, though Python reads
    them) or one too large for a float, such as 1e400. Nothing non-finite is stored, so nothing
    read back can fail to encode."""
    try:
        return json.loads(body, parse_constant=_not_a_number, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested deeper than the JSON parser goes") from None


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of a float's range")
    return value
