"""What one sandbox holds while it runs: fault rules, recorded requests, templates, media, and
the webhook posts it makes as Meta's other half."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from devtools.sandbox.catalog import EXAMPLE_TEMPLATES, STATUSES, WEBHOOK_DEFAULTS
from devtools.sandbox.checks import new_wamid
from devtools.webhooks import Poster, inbound_body, preferences_body, pricing_of, status_body


class SandboxState:
    def __init__(self, token: str | None, latency: float) -> None:
        self.token = token
        self.latency = latency
        self.lock = threading.Lock()
        self.rules: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.templates: list[dict[str, Any]] = [dict(t) for t in EXAMPLE_TEMPLATES]
        self.media: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, Any] = dict(WEBHOOK_DEFAULTS)
        self.poster: Poster | None = None

    def reset(self) -> None:
        with self.lock:
            self.rules = []
            self.requests = []
            self.templates = [dict(t) for t in EXAMPLE_TEMPLATES]
            self.media = {}
            self.webhooks = dict(WEBHOOK_DEFAULTS)
        if self.poster:
            self.poster.clear()

    def pick_fault(self, body: dict[str, Any], phone_number_id: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            for rule in self.rules:
                wanted = {"to": body.get("to"), "type": body.get("type"), "phone_number_id": phone_number_id}
                if any(rule.get(name) not in (None, given) for name, given in wanted.items()):
                    continue
                if rule.get("times") is not None and rule["times"] <= 0:
                    continue
                if rule.get("until") is not None and time.time() > rule["until"]:
                    continue
                if random.random() >= float(rule.get("rate", 1.0)):
                    continue
                if rule.get("times") is not None:
                    rule["times"] -= 1
                return rule
        return None

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def configure_webhooks(self, config: dict[str, Any]) -> None:
        with self.lock:
            self.webhooks = {**WEBHOOK_DEFAULTS, **config}
            if self.webhooks["url"] and self.poster is None:
                self.poster = Poster()

    def _post(self, body: dict[str, Any], delay: float) -> None:
        if self.poster and self.webhooks["url"]:
            self.poster.schedule(self.webhooks["url"], body, self.webhooks["secret"] or "", delay)

    def category(self, message: dict[str, Any]) -> str:
        """How Meta would bill a message: its template's category, `service` for anything else."""
        template = message.get("template") if message.get("type") == "template" else None
        if not isinstance(template, dict):
            return "service"
        language = (template.get("language") or {}).get("code")
        with self.lock:
            found = next(
                (
                    t
                    for t in self.templates
                    if t["name"] == template.get("name") and t["language"] == language
                ),
                None,
            )
        return str(found.get("category") or "utility").lower() if found else "utility"

    def post_statuses(
        self, pnid: str, wamid: str, to: str, category: str = "service", callback_data: str | None = None
    ) -> None:
        """What Meta would tell the business about one accepted message, as configured: each
        status but a failure carries its pricing (by `category`), and every one the message's
        biz_opaque_callback_data when it was sent with one."""
        config = self.webhooks
        fail = next((f for f in config["fail"] if f.get("to") in (None, to)), None)
        steps = ["sent", "failed"] if fail else list(STATUSES)
        delays = list(config["delays"])[: len(steps)]
        if config.get("reorder"):
            delays.reverse()
        for status, delay in zip(steps, delays, strict=False):
            failed = status == "failed"
            pricing = None if failed else pricing_of(category)
            error = fail if failed else None
            body = status_body(
                pnid, wamid, status, to, error=error, pricing=pricing, callback_data=callback_data
            )
            for _ in range(2 if config.get("duplicate") else 1):
                self._post(body, delay)

    def post_inbound(self, pnid: str, wa_id: str, text: str) -> str:
        wamid = new_wamid(wa_id)
        self._post(inbound_body(pnid, wamid, wa_id, text), 0)
        return wamid

    def post_preference(self, pnid: str, wa_id: str, value: str) -> None:
        """The customer stops (`stop`) or resumes (`resume`) marketing messages in WhatsApp."""
        self._post(preferences_body(pnid, wa_id, value), 0)

    def webhook_log(self) -> dict[str, Any]:
        poster = self.poster
        return {
            "config": {k: v for k, v in self.webhooks.items() if k != "secret"},
            "posts": list(poster.log) if poster else [],
            "pending": poster.pending() if poster else 0,
        }
