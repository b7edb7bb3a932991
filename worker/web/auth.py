"""API keys of the HTTP API, and each key's request rate limit.

Keys come from DISPATCH_API_KEYS (entries separated by commas) or DISPATCH_API_KEYS_FILE (one
entry a line, `#` starts a comment), each entry

    name:sha256hex[:sender1|sender2]

`sha256hex` is the SHA-256 of the key, so the deployment never holds a key itself (a leaked
environment cannot be replayed); `wa-dispatch api-key new` prints a fresh key and its line. The
senders part limits the key to those senders (`default` is the sender of an intent that names
none); without it the key may use every sender. A key named in DISPATCH_ERASURE_KEYS may also
erase a customer (`DELETE /v1/customers/{number}`, the deployment's whole Redis): a power no
key has unless named. Parsing and lookup are pure; only the rate limit talks to Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, replace

import redis.asyncio

from worker.delivery.intents import SENDER_NAME
from worker.delivery.senders import DEFAULT
from worker.settings import Settings

KEY_PREFIX = "wad_"  # so a leaked key is recognisable in a secret scanner
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ApiKeysError(ValueError):
    """A key entry that cannot be used; the message names the entry, never a key."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: str  # SHA-256 hex of the key
    senders: frozenset[str] | None = None  # None: every sender
    may_erase: bool = False  # named in DISPATCH_ERASURE_KEYS

    def allows(self, sender: str | None) -> bool:
        return self.senders is None or (sender or DEFAULT) in self.senders


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_entry(name: str, key: str, senders: list[str] | None = None) -> str:
    """The DISPATCH_API_KEYS entry for a key (what the deployment stores instead of the key)."""
    entry = f"{name}:{hash_key(key)}" + (f":{'|'.join(senders)}" if senders else "")
    parse_entry(entry)  # refuse a name or sender the parser would refuse later
    return entry


def parse_entry(entry: str) -> ApiKey:
    parts = entry.strip().split(":")
    if len(parts) not in (2, 3):
        raise ApiKeysError(f"entry {parts[0]!r}: expected name:sha256hex[:sender1|sender2]")
    name, digest = parts[0], parts[1].lower()
    if not _NAME.match(name):
        raise ApiKeysError(f"entry {name!r}: a name of letters, digits, '.', '-' and '_'")
    if not _DIGEST.match(digest):
        raise ApiKeysError(f"entry {name!r}: the key's SHA-256 as 64 hex digits (not the key itself)")
    if len(parts) == 2:
        return ApiKey(name, digest)
    senders = frozenset(s.strip() for s in parts[2].split("|"))
    bad = sorted(s for s in senders if not re.fullmatch(SENDER_NAME, s))
    if bad:
        raise ApiKeysError(f"entry {name!r}: not a sender name: {', '.join(map(repr, bad))}")
    return ApiKey(name, digest, senders)


def parse_keys(text: str, separator: str = ",") -> list[ApiKey]:
    """Every entry of DISPATCH_API_KEYS (`,`) or of a keys file (`\\n`, with `#` comments)."""
    entries = [line.split("#", 1)[0].strip() for line in text.split(separator)]
    keys = [parse_entry(e) for e in entries if e]
    names = [k.name for k in keys]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ApiKeysError(f"key names must be unique: {', '.join(twice)}")
    return keys


def load_keys(settings: Settings) -> list[ApiKey]:
    keys = parse_keys(settings.api_keys.get_secret_value()) if settings.api_keys else []
    if settings.api_keys_file:
        try:
            text = settings.api_keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ApiKeysError(f"{settings.api_keys_file}: {exc.strerror}") from None
        keys = parse_keys(text, "\n") + keys
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ApiKeysError("a key name is in both DISPATCH_API_KEYS and DISPATCH_API_KEYS_FILE")
    return with_erasure(keys, settings.erasure_keys)


def with_erasure(keys: list[ApiKey], names: str) -> list[ApiKey]:
    """The keys, those named in `names` (DISPATCH_ERASURE_KEYS, by commas) allowed to erase."""
    erasers = {n.strip() for n in names.split(",") if n.strip()}
    unknown = sorted(erasers - {k.name for k in keys})
    if unknown:
        raise ApiKeysError(f"DISPATCH_ERASURE_KEYS names no API key: {', '.join(map(repr, unknown))}")
    return [replace(k, may_erase=k.name in erasers) for k in keys]


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <key>` header."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def find_key(keys: list[ApiKey], presented: str) -> ApiKey | None:
    """The key whose hash the presented key has; every entry is compared, in constant time."""
    digest = hash_key(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(key.digest, digest):
            found = key
    return found


RATE_PREFIX = "wa:api:rate:"


class RateLimit:
    """A fixed one-second window per key: INCR of `wa:api:rate:<name>:<second>`, gone after 2 s.
    A window (rather than the worker's GCRA) is enough here: it only keeps one app from
    starving the others, the number's own limit is held by the workers."""

    def __init__(self, client: redis.asyncio.Redis, per_second: int) -> None:
        self.redis = client
        self.per_second = per_second

    async def retry_after(self, name: str) -> int | None:
        """None when the request may go on, else the seconds to wait (Retry-After)."""
        now = time.time()
        key = f"{RATE_PREFIX}{name}:{int(now)}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 2)
        count, _ = await pipe.execute()
        return over_limit(count, self.per_second)


def over_limit(count: int, per_second: int) -> int | None:
    """Retry-After for the `count`th request of a window: the window ends within the second, and
    Retry-After counts whole seconds."""
    return None if count <= per_second else 1
