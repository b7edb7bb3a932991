"""A customer's number and messages erased on request (DPDP Act 2023, GDPR): `wa-dispatch forget`.

Every key the project (and Celery, and kombu) writes is looked at, whatever its type, with the
number in each form it is stored in (E.164 `+919999595313`, digits `919999595313` as a wa_id);
kombu's base64 message bodies are decoded to be looked into. What holds the number goes:

- a key whose name holds it (the customer window, the pair limit, an idempotency record keyed by
  it), a string that holds it (a task's result), a queued or unacknowledged message to it (its
  send is cancelled), a webhook inbox entry, a hash field (a dead letter, a ledger entry, a parked
  intent, a report row, the wamid index's copy of the intent), a set member;
- except where a record must remain: an idempotency record keeps its state, so the same key is
  still answered as a duplicate and never sent twice, with the number replaced by its salted
  hash; an opt-out keeps its salted hash, so a campaign still skips the number; the account's
  messaging-limit count keeps the recipient as a hash (Meta counted it); a campaign definition
  loses that number's rows and audience entries only.

The salt is the deployment's own (`wa:erasure:salt`, made once): a hash names the same number on
every later check, and no other deployment's hash of it. `find` is pure over what a key holds;
`Eraser` scans and carries it out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import redis

from worker.redis_conn import connect
from worker.redis_urls import is_redis, is_sentinel
from worker.settings import Settings

SALT_KEY = "wa:erasure:salt"
KEEP_RECORD = ("wa:idem:",)  # hashes whose record must remain, the number replaced
# Set / sorted-set members kept as their salted hash: the opt-outs (worker.campaigns.runs.OPTOUT,
# which reads them so) and an account's messaging-limit count (worker.delivery.reach).
KEEP_AS_HASH = ("wa:optout", "wa:reach:")
CAMPAIGN_DEF = "wa:campaign:def:"
SCAN_BATCH = 500


def forms(number: str) -> tuple[str, ...]:
    """The ways a number is written in what is stored: E.164 and its digits (the wa_id)."""
    digits = number.lstrip("+")
    return (f"+{digits}", digits)


def salted(number: str, salt: str) -> str:
    """The number as a record that must remain keeps it: an HMAC under the deployment's salt."""
    digest = hmac.new(salt.encode(), number.lstrip("+").encode(), hashlib.sha256).hexdigest()
    return f"erased:{digest[:32]}"


def decoded(text: str) -> str:
    """`text`, with a kombu message's base64 body (a queued task's kwargs) decoded beside it."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return text
    payloads = message if isinstance(message, list) else [message]  # unacked: [payload, exchange, key]
    found = [text]
    for payload in payloads:
        body = payload.get("body") if isinstance(payload, dict) else None
        if isinstance(body, str) and (payload.get("properties") or {}).get("body_encoding") == "base64":
            try:
                found.append(base64.b64decode(body).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    return "\n".join(found)


def holds(text: str | None, number: str) -> bool:
    return text is not None and any(form in decoded(text) for form in forms(number))


def scrubbed(text: str, number: str, token: str) -> str:
    for form in forms(number):  # E.164 first: its digits are inside it
        text = text.replace(form, token)
    return text


class Action(StrEnum):
    DELETE_KEY = "delete_key"
    DELETE_FIELD = "delete_field"  # a hash field, a set or sorted-set member, a list element, an entry
    REPLACE_FIELD = "replace_field"  # a record that must remain: the number replaced by its hash
    REPLACE_MEMBER = "replace_member"
    REWRITE = "rewrite"  # a campaign definition without the number's rows


@dataclass(frozen=True)
class Step:
    key: str
    action: Action
    item: str = ""  # the field, member, list element or stream entry id
    value: str = ""  # what replaces it


def pruned(value: Any, number: str, token: str) -> Any:
    """A JSON value without the list items that hold the number (a campaign's rows, its audience's
    numbers), and with the number replaced by its hash in any text left."""
    if isinstance(value, list):
        return [pruned(item, number, token) for item in value if not holds(json.dumps(item), number)]
    if isinstance(value, dict):
        return {name: pruned(item, number, token) for name, item in value.items()}
    return scrubbed(value, number, token) if isinstance(value, str) else value


def find(key: str, kind: str, content: Any, number: str, token: str) -> list[Step]:
    """What to do with one key holding `content` (as redis-py reads a key of this `kind`) so
    that nothing of `number` stays (pure)."""
    if any(form in key for form in forms(number)):
        return [Step(key, Action.DELETE_KEY)]
    if kind == "string":
        if not holds(content, number):
            return []
        if key.startswith(CAMPAIGN_DEF):
            return [Step(key, Action.REWRITE, value=json.dumps(pruned(json.loads(content), number, token)))]
        return [Step(key, Action.DELETE_KEY)]
    if kind == "hash":
        keep = key.startswith(KEEP_RECORD)
        return [
            Step(key, Action.REPLACE_FIELD, name, scrubbed(value, number, token))
            if keep
            else Step(key, Action.DELETE_FIELD, name)
            for name, value in content.items()
            if holds(name, number) or holds(value, number)
        ]
    if kind in ("set", "zset", "list"):
        members = content if kind != "zset" else [member for member, _ in content]
        keep = kind != "list" and key.startswith(KEEP_AS_HASH)
        action = Action.REPLACE_MEMBER if keep else Action.DELETE_FIELD
        return [Step(key, action, m, token if keep else "") for m in members if holds(m, number)]
    if kind == "stream":
        return [
            Step(key, Action.DELETE_FIELD, entry_id)
            for entry_id, fields in content
            if any(holds(v, number) for v in fields.values())
        ]
    return []


@dataclass
class Report:
    """What `forget` did, by key family (`wa:idem`, `celery-task-meta`, ...) and action."""

    number: str
    token: str
    done: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "kept_as": self.token, "removed": dict(sorted(self.done.items()))}


def family(key: str) -> str:
    parts = key.split(":")
    return ":".join(parts[:2]) if key.startswith("wa:") else key.split("-")[0] if "-" in key else parts[0]


class Eraser:
    """Carries out `find` over every key of the given Redis databases (the state, and the broker's
    and results' when they are others)."""

    def __init__(self, clients: Iterable[redis.Redis]) -> None:
        self.clients = list(clients)

    @classmethod
    def of_deployment(cls, settings: Settings) -> Eraser:
        """Over every Redis database the deployment writes: the state's, the broker's and the
        results' (each once; a RabbitMQ broker is not Redis, and is not scanned)."""
        urls = dict.fromkeys(
            [settings.state_redis_url, settings.celery_broker_url, settings.celery_result_backend]
        )
        return cls(connect(u, settings, decode_responses=True) for u in urls if is_redis(u) or is_sentinel(u))

    def salt(self) -> str:
        state = self.clients[0]
        state.set(SALT_KEY, secrets.token_hex(32), nx=True)
        return cast(str, state.get(SALT_KEY))

    def forget(self, number: str) -> Report:
        report = Report(number, salted(number, self.salt()))
        for client in self.clients:
            for key in client.scan_iter(count=SCAN_BATCH):
                if key == SALT_KEY:
                    continue
                for step in find(key, *self._read(client, key), number, report.token):
                    self._apply(client, step)
                    report.done[f"{family(step.key)} {step.action}"] += 1
        return report

    def still_held(self, number: str) -> list[str]:
        """Every key that still holds the number anywhere: empty after `forget`."""
        return sorted(
            key
            for client in self.clients
            for key in client.scan_iter(count=SCAN_BATCH)
            if find(key, *self._read(client, key), number, "")
        )

    @staticmethod
    def _read(client: redis.Redis, key: str) -> tuple[str, Any]:
        kind = cast(str, client.type(key))
        read = {
            "string": client.get,
            "hash": client.hgetall,
            "set": client.smembers,
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            "list": lambda k: client.lrange(k, 0, -1),
            "stream": lambda k: client.xrange(k),
        }.get(kind)
        return kind, read(key) if read else None

    @staticmethod
    def _apply(client: redis.Redis, step: Step) -> None:
        key, item = step.key, step.item
        if step.action is Action.DELETE_KEY:
            client.delete(key)
            return
        if step.action is Action.REWRITE:
            client.set(key, step.value, keepttl=True)
            return
        if step.action is Action.REPLACE_FIELD:
            client.hset(key, item, step.value)
            return
        kind = cast(str, client.type(key))
        score = client.zscore(key, item) if kind == "zset" else None
        remove = {
            "hash": client.hdel,
            "set": client.srem,
            "zset": client.zrem,
            "stream": client.xdel,
            "list": lambda k, member: client.lrem(k, 0, member),
        }[kind]
        remove(key, item)
        if step.action is Action.REPLACE_MEMBER and kind == "set":
            client.sadd(key, step.value)
        elif step.action is Action.REPLACE_MEMBER and score is not None:
            client.zadd(key, {step.value: score})
