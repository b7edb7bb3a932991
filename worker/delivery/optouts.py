"""Marketing opt-outs: who asked to stop marketing messages, why and when, honoured on their own.

A customer opts out by writing a keyword (DISPATCH_OPTOUT_KEYWORDS: STOP, UNSUBSCRIBE, their
Hindi forms), by Meta's `user_preferences` webhook (`stop`), or is found opted out when Meta
fails a marketing message with 131050; an operator adds numbers with `wa-dispatch optout add`.
A keyword of DISPATCH_OPTIN_KEYWORDS (START) or a `resume` opts back in. Campaigns skip an
opted-out number and a marketing template to it fails before it is sent; utility and
authentication templates and service replies still go. Opt-outs are per deployment, not per
sender: a customer who stops one of the business's numbers stops its campaigns.

Kept so that they outlive an erasure (worker.ops.erasure): a record per number in
`wa:optout:why`, keyed by the number's salted hash (never the number), holding the reason and the
time; and `wa:optout:at`, a sorted set of the numbers (scored by that time) that `optout list`
reads, whose members `wa-dispatch forget` replaces by the same salted hash. `wa:optout`, the
plain set of earlier versions, is still read (its numbers have no reason or time). What decides
(`meaning`, `blocks`) is pure.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, cast

import redis

from worker.ops.erasure import SALT_KEY, salted
from worker.redis_conn import group_of

LEGACY = "wa:optout"  # a plain set of numbers (or their salted hashes), read, no longer written
RECORDS = "wa:optout:why"  # salted hash -> the record as JSON: holds no number
NUMBERS = "wa:optout:at"  # sorted set: number (its salted hash once erased) -> when
ERASED = "erased:"  # the prefix of a salted hash (worker.ops.erasure.salted)

DETAIL_MAX = 200


class Reason(StrEnum):
    """Why a number is opted out: the closed vocabulary of `optout list` and of skip reasons."""

    KEYWORD = "keyword"  # the customer wrote an opt-out keyword
    USER_PREFERENCES = "user_preferences"  # Meta's webhook: the customer stopped marketing messages
    META_131050 = "meta_131050"  # Meta failed a marketing message: the customer stopped them
    OPERATOR = "operator"  # `wa-dispatch optout add`
    LEGACY = "legacy"  # in the plain set of earlier versions: no reason or time kept


class Meaning(StrEnum):
    """What an inbound text says about marketing messages."""

    STOP = "stop"
    START = "start"
    NONE = "none"


class Category(StrEnum):
    """Meta's template categories (the registry's `category`, upper case there)."""

    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"


@dataclass(frozen=True)
class OptOut:
    """One opt-out: why, when (unix seconds; None for a legacy one), and a short detail (the
    keyword written, Meta's description): never the number, never a wamid (which holds it)."""

    reason: Reason
    at: float | None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for a skip or failure: `keyword "STOP" at 2025-01-02T03:04:05Z`."""
        detail = f' "{self.detail}"' if self.detail else ""
        when = f" at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.at))}" if self.at else ""
        return f"{self.reason.value}{detail}{when}"

    @classmethod
    def from_json(cls, raw: str) -> OptOut:
        doc = json.loads(raw)
        return cls(Reason(doc["reason"]), doc.get("at"), doc.get("detail") or "")


# --- the decisions (pure) ---------------------------------------------------------------------------

_EDGES = " \t\r\n.,!?;:'\"()[]{}।॥-*_~"


def normalized(text: str) -> str:
    """A text as keywords are compared: NFC, case folded, inner spaces collapsed, punctuation and
    WhatsApp's *bold* marks stripped at the ends."""
    text = unicodedata.normalize("NFC", text).casefold()
    return re.sub(r"\s+", " ", text).strip(_EDGES)


def keywords(setting: str) -> frozenset[str]:
    """A comma-separated keyword setting, each keyword normalized."""
    return frozenset(k for k in (normalized(part) for part in setting.split(",")) if k)


def meaning(text: str | None, stop: frozenset[str], start: frozenset[str]) -> Meaning:
    """STOP or START when the whole message is one of the keywords, else NONE: "stop" opts out,
    "please don't stop the offers" does not."""
    if not text:
        return Meaning.NONE
    said = normalized(text)
    if said in stop:
        return Meaning.STOP
    if said in start:
        return Meaning.START
    return Meaning.NONE


def said(message: dict[str, Any]) -> str | None:
    """The words of an inbound message (Meta's message object) a keyword is looked for in: a text's
    body, a quick-reply button's text (a marketing template's "Stop promotions"), an interactive
    reply's title."""
    kind = message.get("type")
    part = message.get(kind) if isinstance(kind, str) else None
    if not isinstance(part, dict):
        return None
    if kind == "text":
        body = part.get("body")
    elif kind == "button":
        body = part.get("text") or part.get("payload")
    elif kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        body = reply.get("title") if isinstance(reply, dict) else None
    else:
        body = None
    return body if isinstance(body, str) else None


def blocks(opted: OptOut | None, category: str | None, campaign: bool) -> str | None:
    """Why a message must not go to an opted-out customer, or None when it may: every campaign
    message and every marketing template is held back; a utility or authentication template, a
    service reply, or a template whose category the registry does not know, goes."""
    if opted is None:
        return None
    if campaign:
        return f"opted out of marketing messages ({opted.describe()}): campaign message not sent"
    if (category or "").upper() == Category.MARKETING:
        return f"opted out of marketing messages ({opted.describe()}): marketing template not sent"
    return None


def e164(number: str) -> str:
    """A wa_id (digits) or an E.164 number, as campaigns and intents write it."""
    return "+" + number.lstrip("+")


# --- the store --------------------------------------------------------------------------------------


class OptOuts:
    """The opt-outs in Redis. Checks are one round trip (through the client's group commit)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._salt: str | None = None

    def salt(self) -> str:
        """The deployment's erasure salt, made here if no erasure made it first (the same key and
        rule as worker.ops.erasure: set once, never changed), kept once read."""
        if self._salt is None:
            self.redis.set(SALT_KEY, secrets.token_hex(32), nx=True)
            self._salt = cast(str, self.redis.get(SALT_KEY))
        return self._salt

    def record(self, number: str, reason: Reason, at: float | None = None, detail: str = "") -> bool:
        """Opt a number out; True when it was not opted out already (the first reason is kept)."""
        at = time.time() if at is None else at
        token = salted(number, self.salt())
        entry = OptOut(reason, at, detail[:DETAIL_MAX])
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(RECORDS, token, json.dumps(entry.as_dict(), ensure_ascii=False))
        pipe.zadd(NUMBERS, {e164(number): at}, nx=True)
        pipe.zrem(NUMBERS, token)  # an erased number that opts out again is listed by its number
        return bool(pipe.execute()[0])

    def remove(self, number: str) -> bool:
        """Opt a number back in (START, `resume`, `optout remove`); True when it was opted out."""
        token = salted(number, self.salt())
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(RECORDS, token)
        pipe.zrem(NUMBERS, e164(number), token)
        pipe.srem(LEGACY, e164(number), number.lstrip("+"), token)
        return any(pipe.execute())

    def check(self, numbers: Iterable[str]) -> dict[str, OptOut]:
        """Those of `numbers` that opted out, with their record, in one round trip."""
        numbers = list(dict.fromkeys(numbers))
        if not numbers:
            return {}
        salt = self.salt()
        tokens = [salted(n, salt) for n in numbers]

        def build(pipe: Any) -> None:
            pipe.hmget(RECORDS, tokens)
            pipe.smismember(LEGACY, numbers + tokens)

        records, legacy = group_of(self.redis).execute(build)
        found = {}
        for i, number in enumerate(numbers):
            if records[i]:
                found[number] = OptOut.from_json(records[i])
            elif legacy[i] or legacy[len(numbers) + i]:
                found[number] = OptOut(Reason.LEGACY, None)
        return found

    def listing(self) -> list[dict[str, Any]]:
        """Every opt-out: number (or `erased:<hash>` once forgotten), reason, at, detail."""
        salt = self.salt()
        listed = cast(list[tuple[str, float]], self.redis.zrange(NUMBERS, 0, -1, withscores=True))
        legacy = sorted(cast(set[str], self.redis.smembers(LEGACY)))
        tokens = [m if m.startswith(ERASED) else salted(m, salt) for m, _ in listed]
        records = cast(list[str | None], self.redis.hmget(RECORDS, tokens)) if tokens else []
        rows = []
        for (member, at), raw in zip(listed, records, strict=True):
            entry = OptOut.from_json(raw) if raw else OptOut(Reason.LEGACY, at)
            rows.append({"number": member, **entry.as_dict()})
        shown = {r["number"] for r in rows} | {salted(r["number"], salt) for r in rows}
        for member in legacy:
            if member not in shown and e164(member) not in shown:
                rows.append({"number": member, **OptOut(Reason.LEGACY, None).as_dict()})
        return rows
