"""The template registry: the WABA's message templates synced into Redis, and the checks of a
template intent against them, so a 132000 is found before a campaign sends its first message.

`check_template` is pure. `TemplateRegistry` is a thin Redis store keyed by the WABA id;
`sync_registry` pages through `GET {api_url}/{waba_id}/message_templates`, backing off when the
template endpoints' rate limit (about 200 requests an hour for a new account) answers. Nothing
here sends a message. With no registry synced, `TemplateRegistry.check` checks nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast
from urllib.parse import parse_qs, urlparse

import redis
from pydantic import BaseModel, ConfigDict, Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential

from worker.delivery.client import InteraktClient
from worker.delivery.errors import InvalidIntent, TransientError
from worker.delivery.intents import MessageIntent, Template, TemplateComponent
from worker.delivery.policy import retry_after_of

FIELDS = "name,language,status,category,components,parameter_format,id"
PAGE_SIZE = 100
SYNC_ATTEMPTS = 6  # a throttled sync waits, with backoff, this many times before giving up
STALE_CODES = frozenset({132000, 132001, 132012})  # the API says our copy of the template is wrong


class TemplateStatus(StrEnum):
    """Meta's template statuses; only APPROVED templates can be sent."""

    APPROVED = "APPROVED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"
    IN_APPEAL = "IN_APPEAL"
    PENDING_DELETION = "PENDING_DELETION"
    DELETED = "DELETED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


class ParameterFormat(StrEnum):
    POSITIONAL = "POSITIONAL"  # {{1}}, {{2}}, ...
    NAMED = "NAMED"  # {{first_name}}, sent with `parameter_name`


class HeaderFormat(StrEnum):
    TEXT = "TEXT"
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    DOCUMENT = "DOCUMENT"
    LOCATION = "LOCATION"


# A template button's type -> the `sub_type` a send names it by. An authentication template's
# button (`"type": "OTP"`, with `otp_type` COPY_CODE, ONE_TAP or ZERO_TAP) is sent as a url
# button whose one text parameter is the code (Meta's authentication-templates guide).
BUTTON_SUB_TYPES: dict[str, str] = {
    "QUICK_REPLY": "quick_reply",
    "URL": "url",
    "OTP": "url",
    "COPY_CODE": "copy_code",
    "CATALOG": "catalog",
    "MPM": "mpm",
    "FLOW": "flow",
}

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class SyncedTemplate(BaseModel):
    """One template as `message_templates` returns it (fields we do not use are dropped)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    language: str
    status: str  # a TemplateStatus; kept as text, Meta adds statuses
    category: str | None = None
    parameter_format: ParameterFormat = ParameterFormat.POSITIONAL
    components: list[dict[str, Any]] = Field(default_factory=list)
    id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}:{self.language}"

    def component(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.components if str(c.get("type", "")).upper() == type_), None)


# --- the checks (pure) -----------------------------------------------------------------------------


def placeholders(text: str | None) -> list[str]:
    """The distinct `{{n}}` / `{{name}}` placeholders of a text, in order."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(text or "")))


@dataclass(frozen=True)
class Expected:
    """What one component of a send must carry for the synced template."""

    label: str  # "header", "body", "button 1 (url)"
    names: tuple[str, ...]  # placeholder names; for a media header, its one parameter's type
    kind: str = "text"  # the parameter type the placeholders take


def _expected_header(template: SyncedTemplate) -> Expected | None:
    header = template.component("HEADER")
    if header is None:
        return None
    fmt = str(header.get("format", HeaderFormat.TEXT)).upper()
    if fmt == HeaderFormat.TEXT:
        return Expected("header", tuple(placeholders(header.get("text"))))
    return Expected("header", (fmt.lower(),), kind=fmt.lower())


def _buttons(template: SyncedTemplate) -> list[dict[str, Any]]:
    component = template.component("BUTTONS")
    return list(component.get("buttons", [])) if component else []


def _count(names: tuple[str, ...] | list[str]) -> str:
    return f"{len(names)} parameter{'s' if len(names) != 1 else ''}"


def _check_parameters(expected: Expected, given: TemplateComponent | None, named: bool) -> list[str]:
    """Reasons `given` does not carry what `expected` asks for (empty when it does)."""
    params = list(given.parameters or []) if given else []
    shown = ", ".join(f"{{{{{n}}}}}" for n in expected.names) if expected.kind == "text" else expected.kind
    if len(params) != len(expected.names):
        detail = f" ({shown})" if expected.names else ""
        return [f"{expected.label}: expected {_count(expected.names)}{detail}, given {len(params)}"]
    reasons = []
    if expected.kind != "text":
        if params[0].type != expected.kind:
            reasons.append(
                f"{expected.label}: the template's header is {expected.kind.upper()}, given {params[0].type}"
            )
        return reasons
    if named:
        given_names = [p.parameter_name for p in params]
        if sorted(map(str, given_names)) != sorted(expected.names):
            reasons.append(
                f"{expected.label}: expected parameter_name {sorted(expected.names)}, given {given_names}"
            )
    elif any(p.parameter_name for p in params):
        reasons.append(
            f"{expected.label}: the template is POSITIONAL, parameters must not carry parameter_name"
        )
    return reasons


Placed = tuple[int, TemplateComponent]  # a component of the send, with its position in `components`


def _field(placed: Placed | None) -> str:
    return f"template.components.{placed[0]}" if placed else "template.components"


def _index(component: TemplateComponent) -> int:
    return int(component.index) if component.index is not None else -1


def _button_placeholders(button: dict[str, Any]) -> tuple[str, ...]:
    """A url button's placeholders; an OTP button always takes one: the code."""
    if str(button.get("type", "")).upper() == "OTP":
        return ("1",)
    return tuple(placeholders(button.get("url")))


def _check_buttons(
    synced: SyncedTemplate, sent: list[tuple[int, TemplateComponent]], named: bool
) -> list[tuple[str, str]]:
    buttons = _buttons(synced)
    problems: list[tuple[str, str]] = []
    by_index = {_index(c): (pos, c) for pos, c in sent}
    for index in sorted(set(by_index) - set(range(len(buttons)))):
        problems.append(
            (_field(by_index[index]), f"button index {index}: the template has {len(buttons)} buttons")
        )
    for index, button in enumerate(buttons):
        sub_type = BUTTON_SUB_TYPES.get(str(button.get("type", "")).upper())
        names = _button_placeholders(button) if sub_type == "url" else ()
        placed = by_index.get(index)
        field, given = _field(placed), placed[1] if placed else None
        if given is not None and given.button != sub_type:  # Meta writes "CATALOG" as well as "catalog"
            problems.append(
                (field, f"button index {index}: expected sub_type {sub_type}, given {given.sub_type}")
            )
        elif sub_type == "url" and (given is not None or names):  # others carry a payload, or nothing
            expected = Expected(f"button index {index} ({sub_type})", names)
            problems += [(field, reason) for reason in _check_parameters(expected, given, named=False)]
    return problems


def check_template(template: Template, synced: SyncedTemplate | None) -> list[tuple[str, str]]:
    """(field, reason) for each way `template` does not fit the synced template; empty when it fits."""
    if synced is None:
        return [("template.name", f"no template {template.name!r} in language {template.language.code}")]
    if synced.status != TemplateStatus.APPROVED:
        return [("template.name", f"template {synced.key} is {synced.status}, not APPROVED")]
    named = synced.parameter_format is ParameterFormat.NAMED
    sent: dict[str, list[Placed]] = {kind: [] for kind in ("header", "body", "button", *COMPONENTS)}
    for pos, component in enumerate(template.components or []):
        sent[component.type].append((pos, component))
    problems: list[tuple[str, str]] = []
    body = synced.component("BODY")
    expectations = {
        "header": _expected_header(synced),
        "body": Expected("body", tuple(placeholders(body.get("text")))) if body else None,
    }
    for kind, expected in expectations.items():
        placed = sent[kind][0] if sent[kind] else None
        field, given = _field(placed), placed[1] if placed else None
        if expected is None:
            if given is not None:
                problems.append((field, f"{kind}: the template has no {kind}"))
            continue
        problems += [(field, reason) for reason in _check_parameters(expected, given, named)]
    return problems + _check_buttons(synced, sent["button"], named) + _check_components(synced, sent)


# A send's component kinds that stand for a whole component of the template, by its type there.
COMPONENTS = {"limited_time_offer": "LIMITED_TIME_OFFER", "carousel": "CAROUSEL"}


def _check_components(synced: SyncedTemplate, sent: dict[str, list[Placed]]) -> list[tuple[str, str]]:
    """A limited-time offer or carousel sent to a template that has one (a carousel with as many
    cards as the template's)."""
    problems = []
    for kind, component_type in COMPONENTS.items():
        for pos, given in sent[kind]:
            field, component = _field((pos, given)), synced.component(component_type)
            if component is None:
                problems.append((field, f"{kind}: the template has no {kind}"))
            elif given.cards is not None and len(given.cards) != len(component.get("cards", [])):
                expected = len(component.get("cards", []))
                problems.append((field, f"carousel: expected {expected} cards, given {len(given.cards)}"))
    return problems


# --- the store -------------------------------------------------------------------------------------


class TemplateRegistry:
    """The synced templates of one WABA in Redis: a hash `name:language` -> JSON, when it was synced,
    and which templates the API told us are stale. Reads are cached in the process for
    `cache_ttl` seconds, so a campaign's 100,000 sends do not each read Redis."""

    def __init__(self, client: redis.Redis, waba_id: str, cache_ttl: float = 5.0) -> None:
        self.client = client
        self.waba_id = waba_id
        self.key = f"wa:templates:{waba_id}"
        self.meta_key = f"{self.key}:meta"
        self.stale_key = f"{self.key}:stale"
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, Any]] = {}

    def _cached(self, name: str, load: Callable[[], Any]) -> Any:
        hit = self._cache.get(name)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        value = load()
        self._cache[name] = (time.monotonic() + self.cache_ttl, value)
        return value

    def meta(self) -> dict[str, str]:
        """`synced_at`, `count`, `pages` of the last full sync; empty when never synced."""
        return cast(dict[str, str], self.client.hgetall(self.meta_key))

    def synced(self) -> bool:
        return bool(self._cached("synced", lambda: self.client.exists(self.meta_key)))

    def get(self, name: str, language: str) -> SyncedTemplate | None:
        raw = self.client.hget(self.key, f"{name}:{language}")
        return SyncedTemplate.model_validate_json(raw) if raw else None

    def all(self) -> list[SyncedTemplate]:
        raws = self.client.hvals(self.key)
        return sorted((SyncedTemplate.model_validate_json(r) for r in raws), key=lambda t: t.key)

    def named(self, name: str) -> list[SyncedTemplate]:
        return [t for t in self.all() if t.name == name]

    def stale(self) -> set[str]:
        return cast(set[str], self.client.smembers(self.stale_key))

    def replace(self, templates: list[SyncedTemplate], pages: int) -> None:
        """A full sync: the new set replaces the old one in one transaction."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key, self.stale_key)
            if templates:
                pipe.hset(self.key, mapping={t.key: t.model_dump_json() for t in templates})
            pipe.hset(
                self.meta_key, mapping={"synced_at": time.time(), "count": len(templates), "pages": pages}
            )
            pipe.execute()
        self._cache.clear()

    def put(self, name: str, templates: list[SyncedTemplate]) -> None:
        """A one-template re-sync: every language of `name` as the API has it now."""
        old = [t.key for t in self.named(name)]
        stale = [key for key in self.stale() if key.startswith(f"{name}:")]  # names have no ':'
        with self.client.pipeline(transaction=True) as pipe:
            if old:
                pipe.hdel(self.key, *old)
            if templates:
                pipe.hset(self.key, mapping={t.key: t.model_dump_json() for t in templates})
            if stale:
                pipe.srem(self.stale_key, *stale)
            pipe.execute()
        self._cache.clear()

    def mark_stale(self, name: str, language: str, resync_after: float) -> bool:
        """The API refused a send of this template (132000, 132001, 132012): stop checking against our
        copy. True when a re-sync is due (at most one per `resync_after` seconds per template)."""
        self.client.sadd(self.stale_key, f"{name}:{language}")
        self._cache.clear()
        due = self.client.set(f"{self.key}:resync:{name}", 1, nx=True, ex=max(1, int(resync_after)))
        return bool(due)

    def category(self, name: str, language: str) -> str | None:
        """The synced template's category (MARKETING, UTILITY, AUTHENTICATION), None when the
        registry does not have it; read through the same cache as `check`."""
        synced = self._cached(f"template:{name}:{language}", lambda: self.get(name, language))
        return synced.category if synced else None

    def check(self, intent: MessageIntent) -> None:
        """Raise InvalidIntent when a template intent does not fit the synced registry. Checks nothing
        for other types, when no registry is synced, or for a template the API said is stale."""
        if intent.template is None or not self.synced():
            return
        name, language = intent.template.name, intent.template.language.code
        key = f"{name}:{language}"
        if self._cached(f"stale:{key}", lambda: self.client.sismember(self.stale_key, key)):
            return
        synced = self._cached(f"template:{key}", lambda: self.get(name, language))
        problems = check_template(intent.template, synced)
        if problems:
            raise InvalidIntent.from_fields(problems)


# --- the sync ----------------------------------------------------------------------------------------


def _next_cursor(body: dict[str, Any]) -> str | None:
    """The `after` cursor of the next page, or None on the last one (Meta omits `next` there)."""
    paging = body.get("paging") or {}
    if not paging.get("next"):
        return None
    after = (paging.get("cursors") or {}).get("after")
    return after or (parse_qs(urlparse(paging["next"]).query).get("after") or [None])[0]


def fetch_templates(
    client: InteraktClient, waba_id: str, backoff: float, name: str | None = None
) -> tuple[list[SyncedTemplate], int]:
    """Every template of the WABA (or every language of `name`), following the pages; a throttled
    or failing page is retried with exponential backoff from `backoff` seconds, honouring
    Retry-After."""
    exponential = wait_exponential(multiplier=backoff, max=backoff * 30)
    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(SYNC_ATTEMPTS),
        wait=lambda state: retry_after_of(state) or exponential(state),
        reraise=True,
    )
    params: dict[str, Any] = {"fields": FIELDS, "limit": PAGE_SIZE}
    if name:
        params["name"] = name
    templates: list[SyncedTemplate] = []
    pages = 0
    while True:
        body = retrying(lambda: client.call("GET", f"{waba_id}/message_templates", params=params).body)
        pages += 1
        templates += [SyncedTemplate.model_validate(t) for t in body.get("data") or []]
        after = _next_cursor(body)
        if after is None:
            break
        params["after"] = after
    if name:  # the API's `name` filter matches substrings
        templates = [t for t in templates if t.name == name]
    return templates, pages


def sync_registry(
    client: InteraktClient, registry: TemplateRegistry, backoff: float, name: str | None = None
) -> dict[str, Any]:
    """Sync the whole registry, or only `name`; one sync at a time per WABA (a Redis lock), so beat,
    the CLI and stale-template re-syncs never spend the rate limit twice."""
    lock = registry.client.lock(f"{registry.key}:sync-lock", timeout=900, blocking_timeout=0)
    if not lock.acquire(blocking=False):
        return {"waba_id": registry.waba_id, "name": name, "skipped": "another sync is running"}
    try:
        templates, pages = fetch_templates(client, registry.waba_id, backoff, name)
        if name:
            registry.put(name, templates)
        else:
            registry.replace(templates, pages)
    finally:
        lock.release()
    return {"waba_id": registry.waba_id, "name": name, "templates": len(templates), "pages": pages}
