"""Webhook signatures: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` (pure).

Several secrets may be valid at once (DISPATCH_WEBHOOK_SECRET is comma-separated), so a secret
can be rotated without downtime: add the new one, switch the sender, then drop the old one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def sign(body: bytes, secret: bytes) -> str:
    """The header value a sender computes for `body` (used by the sandbox and the tests)."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Sequence[bytes]) -> bool:
    """True when `header` is the signature of `body` under any of `secrets`. Every secret is
    compared in constant time, and all of them are tried, so timing tells nothing about which."""
    if not header or not header.startswith(PREFIX) or not secrets:
        return False
    given = header.encode()
    matches = [hmac.compare_digest(sign(body, secret).encode(), given) for secret in secrets]
    return any(matches)


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two tokens (the handshake's verify token)."""
    return hmac.compare_digest(given.encode(), expected.encode())
