"""A real HTTP server in a thread standing in for an app's callback endpoint: it answers as told
(fail with a status, hang past the caller's timeout, or take the event) and keeps every body it
got with whether its signature verified."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.callbacks.signing import HEADER, verify


@dataclass
class Receiver:
    secret: bytes
    plan: list[int | float] = field(default_factory=list)  # per request: an HTTP status, or seconds to hang
    got: list[dict[str, Any]] = field(default_factory=list)  # every request, with `verified`
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    down_until: float = 0.0  # until then (time.time()), every request is answered 503

    def answer(self, body: bytes, header: str | None) -> int | float:
        with self.lock:
            step = self.plan.pop(0) if self.plan else 503 if time.time() < self.down_until else 200
            self.got.append(
                {"event": json.loads(body), "verified": verify(header, body, self.secret), "answer": step}
            )
        return step

    def taken(self) -> dict[str, dict[str, Any]]:
        """Each event the app kept, once, by id (a repeat dropped): what was answered 2xx."""
        with self.lock:
            return {g["event"]["id"]: g["event"] for g in self.got if g["answer"] == 200}


@contextmanager
def receiver(secret: bytes, path: str = "/hooks") -> Iterator[Receiver]:
    state = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            step = state.answer(body, self.headers.get(HEADER))
            if isinstance(step, float):  # hang past the caller's read timeout, then answer
                time.sleep(step)
                step = 200
            self.send_response(int(step))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}{path}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
