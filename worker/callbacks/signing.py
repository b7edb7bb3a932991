"""Callback signatures, Stripe-style (pure): `X-Dispatch-Signature: t=<unix seconds>,v1=<hex>`,
the HMAC-SHA256 of `"<t>.<body>"` under the key's secret. The time is signed with the body, so a
receiver refuses a replay by refusing an old `t` (`verify`'s tolerance)."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Dispatch-Signature"
TOLERANCE = 300  # seconds a receiver accepts a signature for, by default


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    header: str | None, body: bytes, secret: bytes, tolerance: float = TOLERANCE, now: float | None = None
) -> bool:
    """What a receiving app runs: True when `header` signs `body` under `secret` and was made at
    most `tolerance` seconds from `now`. Any `v1` may match (a secret being rotated)."""
    if not header:
        return False
    parts = [p.partition("=") for p in header.split(",")]
    stamps = [v for k, _, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not signatures:
        return False
    timestamp = int(stamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body).encode()
    return any([hmac.compare_digest(expected, s.encode()) for s in signatures])
