"""A local Interakt-compatible API for tests, demos and benchmarks: `python -m devtools.sandbox --port 8089`.

It answers POST {base}/{phone_number_id}/messages like the real API (Meta-shaped success and
error bodies, `wamid.` ids), checks headers and the message object on its own terms (it does
not reuse the worker's validation, so it can catch the worker's mistakes), records every
request, and injects faults on demand through `/_sandbox/faults`:

    {"latency": 0.05, "rules": [
      {"status": 500, "rate": 0.3},                       # 30 % of sends answer HTTP 500
      {"status": 429, "code": 130429, "retry_after": 2, "times": 5},
      {"code": 131047, "to": "+919999595313"},            # a Meta error for one recipient
      {"drop": true, "times": 1},                         # close the connection, no answer
      {"sleep": 3, "accept": true, "times": 2},           # accept, then answer too late
      {"code": 190, "status": 401, "for": 60},            # token expired for the next minute
    ]}

Given a webhook URL and secret (`--webhook-url`, `--webhook-secret`, or at run time
`POST /_sandbox/webhooks`), it plays Meta's other half: for each accepted message it posts
signed `sent`, `delivered` and `read` statuses after `delays` seconds, or `sent` then `failed`
with a code for recipients named in `fail`, each status twice with `duplicate`, in reverse
order with `reorder`; `POST /_sandbox/inbound {"from": ..., "text": ...}` posts a customer's
message. Posts are retried until they get a 200; `GET /_sandbox/webhooks` lists them.

    {"url": "http://127.0.0.1:8000/webhooks/whatsapp", "secret": "s3cret",
     "delays": [0.5, 1.5, 3], "duplicate": false, "reorder": false,
     "fail": [{"to": "+919999595313", "code": 131026, "title": "Message undeliverable"}]}

A rule matches when its `to`/`type`/`phone_number_id` filters match, its `rate` draws true, it has `times`
left and its `for` seconds (counted from when the rules were set) have not run out; the first
matching rule applies. `accept: true` records the message as accepted
before the fault, which is what makes a timeout ambiguous in real life.

Templates and media, as the API has them:

    GET  {base}/{waba_id}/message_templates?limit=&after=&name=   pages of EXAMPLE_TEMPLATES
    POST /_sandbox/templates {"templates": [...], "replace": false}  add or edit templates
    POST {base}/{phone_number_id}/media          multipart: messaging_product, type, file
    GET | DELETE {base}/{media_id}               the uploaded media's metadata / delete it
    GET  /_sandbox/media/{media_id}              its bytes

A template message is checked against the sandbox's own templates: an unknown name or language
answers 132001, a PAUSED or DISABLED one 132015 or 132016, a parameter count that does not match
the placeholders 132000, a header parameter of the wrong type 132012. A fault rule with
`"type": "message_templates"` applies to the template listing (e.g. its rate limit).
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import hashlib
import json
import os
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from devtools.webhooks import Poster, inbound_body, status_body
from worker.delivery.intents import MESSAGE_TYPES as TYPES
from worker.delivery.media import RULES

MESSAGE_TYPES = frozenset(TYPES)  # the spec's vocabulary; the checks below are the sandbox's own
_ROUTE = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<pnid>[^/]+)/messages/?$")
_TEMPLATES = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<waba>[^/]+)/message_templates/?$")
_MEDIA = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<pnid>[^/]+)/media/?$")
_MEDIA_ID = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<media_id>\d{10,})/?$")


def _template(name: str, category: str, *components: dict[str, Any], **extra: str) -> dict[str, Any]:
    """A template as `message_templates` lists it (APPROVED, en_US unless `extra` says otherwise)."""
    return {
        "name": name,
        "language": "en_US",
        "status": "APPROVED",
        "category": category,
        "components": list(components),
        **extra,
    }


def _body(text: str) -> dict[str, Any]:
    return {"type": "BODY", "text": text}


EXAMPLE_TEMPLATES: list[dict[str, Any]] = [
    _template("hello_world", "UTILITY", _body("Hello World")),
    _template("order_update", "UTILITY", _body("Hi {{1}}, your order has shipped.")),
    _template(
        "order_receipt",
        "UTILITY",
        {"type": "HEADER", "format": "IMAGE"},
        _body("Hi {{1}}, order {{2}} is confirmed."),
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Help"},
            ],
        },
    ),
    _template(
        "welcome_named",
        "MARKETING",
        _body("Welcome {{first_name}}, from {{city}}!"),
        parameter_format="NAMED",
    ),
    _template("summer_sale", "MARKETING", _body("Sale: {{1}} off"), status="PAUSED"),
    *(
        _template(
            f"login_{otp_type.lower()}",
            "AUTHENTICATION",
            _body("*{{1}}* is your verification code. For your security, do not share this code."),
            {"type": "FOOTER", "text": "This code expires in 10 minutes.", "code_expiration_minutes": 10},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "OTP", "otp_type": otp_type, "text": "Copy code", **extra}],
            },
        )
        for otp_type, extra in (
            ("COPY_CODE", {}),
            ("ONE_TAP", {"autofill_text": "Autofill", "package_name": "com.example.shop"}),
            (
                "ZERO_TAP",
                {
                    "autofill_text": "Autofill",
                    "package_name": "com.example.shop",
                    "zero_tap_terms_accepted": True,
                },
            ),
        )
    ),
]

# Meta's media rules are data (MIME types per type, and size limits); the checks below are the
# sandbox's own. A sticker up to the animated limit: the sandbox does not parse WebP.
MEDIA_LIMITS: dict[str, tuple[tuple[str, ...], int]] = {
    str(kind): (rule.mime_types, rule.animated_max_bytes or rule.max_bytes) for kind, rule in RULES.items()
}
CODE_TITLES = {
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is paused",
    132016: "Template is disabled",
}

STATUSES = ("sent", "delivered", "read")
WEBHOOK_DEFAULTS: dict[str, Any] = {"url": None, "secret": None, "delays": [0.5, 1.5, 3.0], "fail": []}
_TITLES = {500: "Internal server error", 429: "Rate limit hit", 400: "Invalid parameter"}


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

    def post_statuses(self, pnid: str, wamid: str, to: str) -> None:
        """What Meta would tell the business about one accepted message, as configured."""
        config = self.webhooks
        fail = next((f for f in config["fail"] if f.get("to") in (None, to)), None)
        steps = ["sent", "failed"] if fail else list(STATUSES)
        delays = list(config["delays"])[: len(steps)]
        if config.get("reorder"):
            delays.reverse()
        for status, delay in zip(steps, delays, strict=False):
            body = status_body(pnid, wamid, status, to, error=fail if status == "failed" else None)
            for _ in range(2 if config.get("duplicate") else 1):
                self._post(body, delay)

    def post_inbound(self, pnid: str, wa_id: str, text: str) -> str:
        wamid = new_wamid(wa_id)
        self._post(inbound_body(pnid, wamid, wa_id, text), 0)
        return wamid

    def webhook_log(self) -> dict[str, Any]:
        poster = self.poster
        return {
            "config": {k: v for k, v in self.webhooks.items() if k != "secret"},
            "posts": list(poster.log) if poster else [],
            "pending": poster.pending() if poster else 0,
        }


def new_wamid(to: str) -> str:
    raw = b"\x1c\x18\x0c" + to.lstrip("+").encode() + b"\x15\x02\x00\x11\x18\x12" + os.urandom(9)
    return "wamid." + base64.b64encode(raw).decode()


def _error(status: int, code: int, message: str, details: str | None = None) -> tuple[int, dict[str, Any]]:
    err: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": base64.b32encode(os.urandom(10)).decode().rstrip("="),
    }
    if details:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return status, {"error": err}


def _placeholder_count(text: str | None) -> int:
    return len(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text or "")))


def template_error(templates: list[dict[str, Any]], sent: dict[str, Any]) -> tuple[int, str] | None:
    """The sandbox's own check of a template message against its templates: (code, details) or None."""
    language = (sent.get("language") or {}).get("code")
    found = next((t for t in templates if t["name"] == sent.get("name") and t["language"] == language), None)
    if found is None:
        return 132001, f"template name ({sent.get('name')}) does not exist in {language}"
    status = {"PAUSED": 132015, "DISABLED": 132016}.get(found["status"], 132001)
    if found["status"] != "APPROVED":
        return status, f"template {found['name']} is {found['status']}"
    given = {c.get("type"): c.get("parameters") or [] for c in sent.get("components") or []}
    for part in found["components"]:
        kind = part["type"].lower()
        if kind not in ("header", "body"):
            continue
        params = given.get(kind, [])
        media = part.get("format", "TEXT") != "TEXT"
        wanted = 1 if media else _placeholder_count(part.get("text"))
        if len(params) != wanted:
            return (
                132000,
                f"number of {kind} parameters ({len(params)}) does not match the expected ({wanted})",
            )
        if media and params[0].get("type") != part["format"].lower():
            return 132012, f"header parameter of type {params[0].get('type')}, expected {part['format']}"
    return None


def media_error(fields: dict[str, Any]) -> str | None:
    """What is wrong with an upload's form fields, or None."""
    if fields.get("messaging_product") != "whatsapp":
        return "messaging_product must be 'whatsapp'"
    upload = fields.get("file")
    if not isinstance(upload, dict):
        return "the 'file' part is required"
    mime = upload["mime_type"]
    kind = next((k for k, (types, _) in MEDIA_LIMITS.items() if mime in types), None)
    if kind is None or fields.get("type") not in (mime, kind):
        return f"file must have a supported type (got {mime}, type {fields.get('type')})"
    if len(upload["data"]) > MEDIA_LIMITS[kind][1]:
        return f"{kind} is larger than {MEDIA_LIMITS[kind][1]} bytes"
    return None


def parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """Form fields by name; a file part as {"data", "mime_type", "filename"}."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            fields[str(name)] = {
                "data": data,
                "mime_type": part.get_content_type(),
                "filename": part.get_filename(),
            }
        else:
            fields[str(name)] = data.decode()
    return fields


def check_message(body: Any) -> str | None:
    """The sandbox's own reading of the spec; returns what is wrong, or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be 'whatsapp'"
    if body.get("status") == "read":
        return (
            None
            if isinstance(body.get("message_id"), str) and body["message_id"]
            else "message_id is required"
        )
    if not re.fullmatch(r"\+?\d{8,15}", str(body.get("to", ""))):
        return "to must be a phone number or wa_id"
    if body.get("recipient_type", "individual") != "individual":
        return "recipient_type must be 'individual'"
    return _check_content(body)


def _check_content(body: dict[str, Any]) -> str | None:
    """The message object of the body's `type`, and no other."""
    kind = body.get("type")
    if kind not in MESSAGE_TYPES:
        return f"unknown message type {kind!r}"
    content = body.get(kind)
    if kind == "contacts" and not (isinstance(content, list) and content):
        return "contacts must be a non-empty array"
    if kind != "contacts" and not isinstance(content, dict):
        return f"the '{kind}' object is required"
    others = MESSAGE_TYPES & set(body) - {kind}
    if others:
        return f"unexpected objects for type {kind}: {sorted(others)}"
    if "context" in body and not (isinstance(body["context"], dict) and body["context"].get("message_id")):
        return "context.message_id is required"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waited for the
    # client's delayed ACK of the headers, about 40 ms on every answer, on top of any latency set.
    disable_nagle_algorithm = True
    server: SandboxServer

    def log_message(self, *_: Any) -> None:  # the recorded requests are the log
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _body(self, raw: bytes) -> Any:
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return None

    def _auth_error(self) -> tuple[int, dict[str, Any]] | None:
        token = self.headers.get("x-access-token")
        if not token or (self.server.state.token and token != self.server.state.token):
            return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if not self.headers.get("x-waba-id"):
            return _error(400, 100, "(#100) The parameter x-waba-id is required.")
        return None

    def do_GET(self) -> None:
        state = self.server.state
        url = urlparse(self.path)
        if url.path.startswith("/_sandbox/media/"):
            return self._media_bytes(url.path.rsplit("/", 1)[-1])
        if _TEMPLATES.match(url.path):
            return self._list_templates(parse_qs(url.query))
        if _MEDIA_ID.match(url.path):
            return self._media_object(_MEDIA_ID.match(url.path)["media_id"], delete=False)  # type: ignore[index]
        if self.path == "/_sandbox/health":
            return self._send(200, {"ok": True})
        if self.path.startswith("/_sandbox/requests"):
            with state.lock:
                return self._send(200, {"requests": list(state.requests)})
        if self.path == "/_sandbox/faults":
            with state.lock:
                return self._send(200, {"latency": state.latency, "rules": state.rules})
        if self.path == "/_sandbox/webhooks":
            return self._send(200, state.webhook_log())
        if _ROUTE.match(self.path):  # the spec's curl for mark-as-read says GET; the API wants POST
            return self._send(*_error(400, 100, "Unsupported get request.", "use POST for /messages"))
        self._send(404, {"error": {"message": "not found", "code": 100}})

    def do_DELETE(self) -> None:
        match = _MEDIA_ID.match(self.path)
        if match:
            return self._media_object(match["media_id"], delete=True)
        if self.path == "/_sandbox/faults":
            with self.server.state.lock:
                self.server.state.rules = []
            return self._send(200, {"ok": True})
        self._send(404, {"error": {"message": "not found", "code": 100}})

    def do_POST(self) -> None:
        state = self.server.state
        raw = self._raw()
        if _MEDIA.match(self.path):
            return self._upload(raw)
        body = self._body(raw)
        if self.path == "/_sandbox/templates":
            added = list((body or {}).get("templates", []))
            keys = {(t["name"], t["language"]) for t in added}
            with state.lock:  # a template of the same name and language is edited, not added twice
                kept = [] if (body or {}).get("replace") else state.templates
                state.templates = [t for t in kept if (t["name"], t["language"]) not in keys] + added
            return self._send(200, {"ok": True, "templates": len(state.templates)})
        if self.path == "/_sandbox/faults":
            now = time.time()
            rules = [
                {**r, "until": now + r["for"]} if "for" in r else r for r in (body or {}).get("rules", [])
            ]
            with state.lock:
                state.rules = rules
                state.latency = float((body or {}).get("latency", state.latency))
            return self._send(200, {"ok": True})
        if self.path == "/_sandbox/reset":
            state.reset()
            return self._send(200, {"ok": True})
        if self.path == "/_sandbox/webhooks":
            state.configure_webhooks(body or {})
            return self._send(200, {"ok": True})
        if self.path == "/_sandbox/inbound":
            wamid = state.post_inbound(body.get("phone_number_id", "sandbox"), body["from"], body["text"])
            return self._send(200, {"wamid": wamid})
        match = _ROUTE.match(self.path)
        if not match:
            return self._send(404, {"error": {"message": "Unknown path components", "code": 2500}})
        self._message(state, match.group("pnid"), body)

    def _message(self, state: SandboxState, pnid: str, body: Any) -> None:
        entry: dict[str, Any] = {
            "time": time.time(),
            "phone_number_id": pnid,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        state.record(entry)  # at arrival: a request the API never answers was still received
        if state.latency:
            time.sleep(state.latency)
        status, answer, headers = self._answer(state, body, entry)
        entry["status"] = status
        if status == 0:  # dropped: close without a response
            self.close_connection = True
            return
        self._send(status, answer, headers)
        if status == 200 and entry.get("wamid"):
            state.post_statuses(pnid, entry["wamid"], body["to"])

    def _list_templates(self, query: dict[str, list[str]]) -> None:
        """One page of templates, Graph API style: `data`, and `paging` with `next` unless last."""
        refused = self._auth_error()
        if refused:
            return self._send(*refused)
        state = self.server.state
        listing = {"route": "message_templates", "path": urlparse(self.path).path, "query": query}
        headers = {k.lower(): v for k, v in self.headers.items()}
        state.record({"time": time.time(), **listing, "headers": headers})
        rule = state.pick_fault({"type": "message_templates"})
        if rule:
            return self._send(*_fault_answer(rule))
        limit = int(query.get("limit", ["25"])[0])
        start = int(base64.b64decode(query["after"][0]).decode()) if "after" in query else 0
        with state.lock:
            chosen = [t for t in state.templates if query.get("name", [""])[0] in t["name"]]
        page = chosen[start : start + limit]
        cursors = {
            "before": base64.b64encode(str(start).encode()).decode(),
            "after": base64.b64encode(str(start + len(page)).encode()).decode(),
        }
        paging: dict[str, Any] = {"cursors": cursors}
        if start + limit < len(chosen):
            paging["next"] = (
                f"http://{self.headers.get('Host')}{urlparse(self.path).path}?after={cursors['after']}"
            )
        self._send(200, {"data": page, "paging": paging})

    def _upload(self, raw: bytes) -> None:
        refused = self._auth_error()
        if refused:
            return self._send(*refused)
        state = self.server.state
        fields = parse_multipart(self.headers.get("Content-Type") or "", raw)
        problem = media_error(fields)
        state.record(
            {
                "time": time.time(),
                "route": "media",
                "problem": problem,
                "size": len(fields["file"]["data"]) if isinstance(fields.get("file"), dict) else None,
            }
        )
        if problem:
            return self._send(*_error(400, 131053, "Media upload error", problem))
        media_id = str(random.randint(10**15, 10**16 - 1))
        upload = fields["file"]
        with state.lock:
            state.media[media_id] = {**upload, "sha256": hashlib.sha256(upload["data"]).hexdigest()}
        self._send(200, {"id": media_id})

    def _media_object(self, media_id: str, delete: bool) -> None:
        refused = self._auth_error()
        if refused:
            return self._send(*refused)
        state = self.server.state
        with state.lock:
            found = state.media.pop(media_id, None) if delete else state.media.get(media_id)
        if found is None:
            return self._send(*_error(400, 100, "(#100) Invalid parameter", f"no media {media_id}"))
        if delete:
            return self._send(200, {"success": True})
        self._send(
            200,
            {
                "messaging_product": "whatsapp",
                "url": f"http://{self.headers.get('Host')}/_sandbox/media/{media_id}",
                "mime_type": found["mime_type"],
                "sha256": found["sha256"],
                "file_size": len(found["data"]),
                "id": media_id,
            },
        )

    def _media_bytes(self, media_id: str) -> None:
        found = self.server.state.media.get(media_id)
        if found is None:
            return self._send(404, {"error": {"message": "not found", "code": 100}})
        self.send_response(200)
        self.send_header("Content-Type", found["mime_type"])
        self.send_header("Content-Length", str(len(found["data"])))
        self.end_headers()
        self.wfile.write(found["data"])

    def _refusal(self, state: SandboxState, body: Any) -> tuple[int, dict[str, Any]] | None:
        """The error answer for a request the API would refuse before looking at faults."""
        refused = self._auth_error()
        if refused:
            return refused
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return _error(400, 100, "(#100) Content-Type must be application/json")
        problem = check_message(body)
        if problem:
            return _error(400, 100, "(#100) Invalid parameter", problem)
        if body.get("type") == "template":
            with state.lock:
                mismatch = template_error(state.templates, body["template"])
            if mismatch:
                code, details = mismatch
                return _error(400, code, f"(#{code}) {CODE_TITLES[code]}", details)
        return None

    def _answer(
        self, state: SandboxState, body: Any, entry: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str] | None]:
        refused = self._refusal(state, body)
        if refused:
            return (*refused, None)
        rule = state.pick_fault(body, entry.get("phone_number_id")) or {}
        entry["fault"] = rule or None
        accepted = not rule or rule.get("accept", False)
        if accepted and body.get("status") != "read":
            entry["wamid"] = new_wamid(body["to"])
        if rule.get("sleep"):
            time.sleep(float(rule["sleep"]))
        if rule.get("drop"):
            return 0, None, None
        if rule.get("status") or rule.get("code"):
            return _fault_answer(rule)
        if body.get("status") == "read":
            return 200, {"success": True}, None
        to = body["to"]
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": entry["wamid"]}],
            },
            None,
        )


def _fault_answer(rule: dict[str, Any]) -> tuple[int, Any, dict[str, str] | None]:
    """The error a fault rule answers with: a Meta error body for a `code`, a bare status otherwise."""
    status = int(rule.get("status") or 400)
    code = rule.get("code")
    headers = {"Retry-After": str(rule["retry_after"])} if rule.get("retry_after") is not None else None
    if code is None:
        return status, {"error": {"message": _TITLES.get(status, "error"), "type": "HTTP"}}, headers
    status, err = _error(status, int(code), rule.get("message", f"sandbox fault {code}"), rule.get("details"))
    return status, err, headers


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        super().__init__(address, Handler)
        self.state = state


def serve(
    host: str = "127.0.0.1",
    port: int = 8089,
    token: str | None = None,
    latency: float = 0.0,
    webhooks: dict[str, Any] | None = None,
) -> None:
    state = SandboxState(token, latency)
    if webhooks and webhooks.get("url"):
        state.configure_webhooks(webhooks)
    server = SandboxServer((host, port), state)
    print(
        json.dumps({"event": "sandbox listening", "url": f"http://{host}:{server.server_port}/api/v17.0"}),
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Local Interakt-compatible WhatsApp API (a sandbox: sends nothing)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--token", default=None, help="accept only this x-access-token (default: any)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--webhook-url", default=None, help="post signed status webhooks here")
    parser.add_argument(
        "--webhook-secret", default=os.environ.get("DISPATCH_WEBHOOK_SECRET", "").split(",")[0]
    )
    parser.add_argument("--status-delays", default="0.5,1.5,3", help="seconds to sent, delivered, read")
    args = parser.parse_args(argv)
    delays = [float(d) for d in args.status_delays.split(",")]
    webhooks = {"url": args.webhook_url, "secret": args.webhook_secret, "delays": delays}
    serve(args.host, args.port, args.token, args.latency, webhooks)


if __name__ == "__main__":
    main()
