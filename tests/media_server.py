"""A tiny local file server for media links: files by path, redirects, and a body that never ends.
It listens on 127.0.0.1, which the worker refuses unless DISPATCH_MEDIA_ALLOW_HOSTS names it.
Each file has an ETag (its content's hash) and answers a matching If-None-Match with 304, as a
web server or CDN does; paths in `no_validators` answer without one."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048


@dataclass
class MediaServer:
    port: int
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    no_validators: set[str] = field(default_factory=set)
    not_modified: list[str] = field(default_factory=list)  # paths answered 304

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        media: MediaServer = self.server.media
        media.hits.append(self.path)
        if self.path in media.redirects:
            self.send_response(302)
            self.send_header("Location", media.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/endless.png":  # no Content-Length: only a cap while reading stops it
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(10_000):
                    self.wfile.write(b"\x00" * 65536)
            except OSError:
                pass
            return
        if self.path not in media.files:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data, mime = media.files[self.path]
        etag = None if self.path in media.no_validators else f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        if etag and self.headers.get("If-None-Match") == etag:
            media.not_modified.append(self.path)
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(data)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def media_server() -> Iterator[MediaServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.media = MediaServer(server.server_port, {"/receipt.png": (PNG, "image/png")})  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.media  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
