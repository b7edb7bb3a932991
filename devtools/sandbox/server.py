"""The HTTP side: routes of the Interakt-compatible API and of `/_sandbox/...`, and the command
line (`python -m devtools.sandbox`)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from devtools.sandbox.catalog import CODE_TITLES
from devtools.sandbox.checks import (
    check_message,
    error_answer,
    fault_answer,
    media_error,
    new_wamid,
    parse_multipart,
    template_error,
)
from devtools.sandbox.state import SandboxState

_ROUTE = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<pnid>[^/]+)/messages/?$")

_TEMPLATES = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<waba>[^/]+)/message_templates/?$")

_MEDIA = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<pnid>[^/]+)/media/?$")

_MEDIA_ID = re.compile(r"^/(?:api/)?v\d+\.\d+/(?P<media_id>\d{10,})/?$")


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
            return error_answer(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if not self.headers.get("x-waba-id"):
            return error_answer(400, 100, "(#100) The parameter x-waba-id is required.")
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
            return self._send(*error_answer(400, 100, "Unsupported get request.", "use POST for /messages"))
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
        if self.path == "/_sandbox/user_preferences":
            state.post_preference(body.get("phone_number_id", "sandbox"), body["from"], body["value"])
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
        try:
            self._send(status, answer, headers)
        finally:  # accepted is accepted: Meta posts its statuses even when the caller is gone
            if status == 200 and entry.get("wamid"):
                callback_data = body.get("biz_opaque_callback_data")
                callback_data = callback_data if isinstance(callback_data, str) else None
                state.post_statuses(pnid, entry["wamid"], body["to"], state.category(body), callback_data)

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
            return self._send(*fault_answer(rule))
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
            return self._send(*error_answer(400, 131053, "Media upload error", problem))
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
            return self._send(*error_answer(400, 100, "(#100) Invalid parameter", f"no media {media_id}"))
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
            return error_answer(400, 100, "(#100) Content-Type must be application/json")
        problem = check_message(body)
        if problem:
            return error_answer(400, 100, "(#100) Invalid parameter", problem)
        if body.get("type") == "template":
            with state.lock:
                mismatch = template_error(state.templates, body["template"])
            if mismatch:
                code, details = mismatch
                return error_answer(400, code, f"(#{code}) {CODE_TITLES[code]}", details)
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
            return fault_answer(rule)
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
