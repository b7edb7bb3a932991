"""Media known before sending: Meta's type and size rules as data, the upload, and link -> media id.

`check_media` is pure and names the rule a file breaks. `upload` POSTs multipart to
`{api_url}/{phone_number_id}/media`. `fetch_link` fetches a link safely against server-side
request forgery: http(s) only; the host's addresses are resolved once and must all be public
(no loopback, private, link-local, metadata or reserved ranges) unless DISPATCH_MEDIA_ALLOW_HOSTS
names the host; the connection goes to the checked address (no second DNS answer can swap it);
every redirect is checked the same way; the body is capped while streaming; connect and read
time out. `MediaLinks` keeps a link's media id 29 days under the URL and the content's hash, and
uploads a link once however many intents carry it at the same time (a Redis lock).
"""

from __future__ import annotations

import hashlib
import ipaddress
import mimetypes
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urljoin, urlparse

import certifi
import redis
import urllib3

from worker.delivery.client import InteraktClient
from worker.delivery.errors import InvalidIntent, PermanentError, TransientError
from worker.delivery.intents import Media, MessageIntent, Template
from worker.settings import Settings

MB = 2**20
KB = 2**10
MAX_REDIRECTS = 5
CHUNK = 64 * KB


class MediaType(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"


MEDIA_KINDS = frozenset(MediaType)


@dataclass(frozen=True)
class MediaRule:
    mime_types: tuple[str, ...]
    max_bytes: int
    animated_max_bytes: int | None = None  # stickers: an animated WebP may be larger

    def describe(self, kind: MediaType) -> str:
        size = _size(self.max_bytes) + (
            f" ({_size(self.animated_max_bytes)} animated)" if self.animated_max_bytes else ""
        )
        return f"{kind}: {' or '.join(self.mime_types)}, at most {size}"


# Meta, Cloud API "Supported media types" (v17.0).
RULES: dict[MediaType, MediaRule] = {
    MediaType.IMAGE: MediaRule(("image/jpeg", "image/png"), 5 * MB),
    MediaType.VIDEO: MediaRule(("video/mp4", "video/3gpp"), 16 * MB),
    MediaType.AUDIO: MediaRule(("audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"), 16 * MB),
    MediaType.DOCUMENT: MediaRule(
        (
            "text/plain",
            "application/pdf",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ),
        100 * MB,
    ),
    MediaType.STICKER: MediaRule(("image/webp",), 100 * KB, animated_max_bytes=500 * KB),
}


def _size(n: int) -> str:
    return f"{n // MB} MB" if n >= MB else f"{n // KB} KB"


def _animated_webp(data: bytes) -> bool:
    """A VP8X WebP with its animation flag set (RIFF....WEBPVP8X, flags at byte 20)."""
    return data[:4] == b"RIFF" and data[8:16] == b"WEBPVP8X" and len(data) > 20 and bool(data[20] & 0x02)


def media_type_of(mime_type: str) -> MediaType | None:
    """The media type a MIME type is sent as (image/webp is a sticker), or None when Meta takes none."""
    return next((kind for kind, rule in RULES.items() if mime_type in rule.mime_types), None)


def check_media(data: bytes, mime_type: str, kind: MediaType | None = None) -> MediaType:
    """The media type `data` goes out as, or InvalidIntent naming the rule it breaks."""
    mime = mime_type.split(";")[0].strip().lower()
    found = media_type_of(mime)
    if found is None or (kind is not None and found is not kind):
        wanted = [RULES[kind]] if kind else list(RULES.values())
        kinds = [kind] if kind else list(RULES)
        rules = "; ".join(rule.describe(k) for k, rule in zip(kinds, wanted, strict=True))
        raise InvalidIntent.from_fields([("file", f"{mime or '(no MIME type)'} is not accepted ({rules})")])
    rule = RULES[found]
    limit = rule.animated_max_bytes if rule.animated_max_bytes and _animated_webp(data) else rule.max_bytes
    if len(data) > limit:
        raise InvalidIntent.from_fields(
            [("file", f"{len(data)} bytes is over the limit ({rule.describe(found)})")]
        )
    return found


def upload(client: InteraktClient, phone_number_id: str, data: bytes, mime_type: str, filename: str) -> str:
    """POST the file to /{phone_number_id}/media (multipart, as Meta documents it); its media id."""
    resp = client.call(
        "POST",
        f"{phone_number_id}/media",
        data={"messaging_product": "whatsapp", "type": mime_type},
        files={"file": (filename, data, mime_type)},
    )
    media_id = resp.body.get("id")
    if not media_id:
        raise PermanentError("the media upload answered without an id", {"code": None, "body": resp.body})
    return str(media_id)


def upload_file(
    client: InteraktClient, phone_number_id: str, file: str | Path | bytes, mime_type: str | None = None
) -> str:
    """Check a file (a path or its bytes) against Meta's rules, then upload it; its media id."""
    if isinstance(file, bytes):
        data, name = file, "upload"
    else:
        data, name = Path(file).read_bytes(), Path(file).name
    mime = mime_type or mimetypes.guess_type(name)[0] or ""
    check_media(data, mime)
    return upload(client, phone_number_id, data, mime, name)


# --- fetching a link safely ----------------------------------------------------------------------


class LinkRefused(PermanentError):
    """A media link that was not fetched: not http(s), not public, too big, or not a 200 answer."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    mime_type: str
    url: str


def _refused(url: str, reason: str, http_status: int | None = None) -> LinkRefused:
    shown = urlparse(url)._replace(query="", fragment="", netloc=urlparse(url).netloc.rsplit("@", 1)[-1])
    return LinkRefused(  # without query or userinfo: a signed link carries its credentials there
        f"media link {shown.geturl()} not fetched: {reason}",
        {"code": None, "title": "media link not fetched", "http_status": http_status},
    )


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_address(url: str, allow_hosts: frozenset[str]) -> tuple[str, int]:
    """The address to connect to for `url`: all of the host's addresses must be public, unless the
    host (or host:port) is in `allow_hosts`. Raises LinkRefused naming the rule."""
    parts = urlparse(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused(url, "only http and https links are fetched")
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _refused(url, f"the host does not resolve ({exc})") from None
    addresses = [str(info[4][0]) for info in infos]
    allowed = host in allow_hosts or f"{host}:{port}" in allow_hosts
    if not allowed and not all(_public(a) for a in addresses):
        raise _refused(
            url,
            f"{host} resolves to a non-public address; only public addresses are fetched "
            "unless DISPATCH_MEDIA_ALLOW_HOSTS names the host",
        )
    return addresses[0], port


def _pool(url: str, address: str, port: int, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    parts = urlparse(url)
    if parts.scheme == "https":
        host = parts.hostname or ""
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            assert_hostname=host,
            server_hostname=host,
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)


def fetch_link(
    url: str, allow_hosts: frozenset[str], max_bytes: int, connect_timeout: float, read_timeout: float
) -> Fetched:
    """GET a media link safely (see the module docstring); LinkRefused with the reason or HTTP status."""
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    for _ in range(MAX_REDIRECTS + 1):
        address, port = resolve_address(url, allow_hosts)
        parts = urlparse(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pool = _pool(url, address, port, timeout)
        try:
            resp = pool.urlopen(
                "GET",
                path,
                headers={"Host": parts.netloc.rsplit("@", 1)[-1]},  # never forward userinfo
                redirect=False,
                preload_content=False,
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _refused(url, f"{type(exc).__name__}: {exc}") from None
        try:
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                continue
            if resp.status != 200:
                raise _refused(url, f"HTTP {resp.status}", resp.status)
            return Fetched(_read_capped(resp, url, max_bytes), resp.headers.get("Content-Type", ""), url)
        finally:
            resp.release_conn()
            pool.close()
    raise _refused(url, f"more than {MAX_REDIRECTS} redirects")


def _read_capped(resp: urllib3.BaseHTTPResponse, url: str, max_bytes: int) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _refused(url, f"{declared} bytes is over the {max_bytes}-byte limit", 200)
    body = bytearray()
    try:
        for chunk in resp.stream(CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise _refused(url, f"more than {max_bytes} bytes (the limit for this media type)", 200)
    except urllib3.exceptions.HTTPError as exc:
        raise _refused(url, f"{type(exc).__name__} while reading: {exc}", 200) from None
    return bytes(body)


# --- link -> media id, cached -------------------------------------------------------------------


def _digest(value: str | bytes) -> str:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).hexdigest()


class MediaLinks:
    """Media ids of fetched links, per phone number id: `wa:media:{pnid}:url:{sha256(url)}` and
    `...:sha256:{sha256(content)}`, kept DISPATCH_MEDIA_CACHE_TTL (29 days; Meta keeps media 30)."""

    def __init__(self, client: redis.Redis, api: InteraktClient, settings: Settings) -> None:
        self.redis = client
        self.api = api
        self.settings = settings
        self.prefix = f"wa:media:{settings.phone_number_id}:"
        # Long enough for a fetch (every redirect) and an upload; waiters wait as long.
        self.lock_timeout = (MAX_REDIRECTS + 2) * (settings.connect_timeout + settings.read_timeout)

    def cached(self, url: str) -> str | None:
        return self.redis.get(self.prefix + "url:" + _digest(url))  # type: ignore[return-value]

    def media_id(self, url: str, kind: MediaType) -> str:
        """The media id for `url`: cached, or fetched and uploaded once whoever else asks meanwhile."""
        found = self.cached(url)
        if found:
            return found
        lock = self.redis.lock(
            self.prefix + "lock:" + _digest(url),
            timeout=self.lock_timeout,
            blocking_timeout=self.lock_timeout,
        )
        try:
            with lock:
                return self.cached(url) or self._fetch_and_upload(url, kind)
        except redis.exceptions.LockError:  # another delivery held it past the timeout: try again later
            raise TransientError("another delivery is still uploading this link", {"code": None}) from None

    def _fetch_and_upload(self, url: str, kind: MediaType) -> str:
        s = self.settings
        limit = RULES[kind].animated_max_bytes or RULES[kind].max_bytes
        fetched = fetch_link(url, s.media_allowed_hosts, limit, s.connect_timeout, s.read_timeout)
        mime = fetched.mime_type.split(";")[0].strip() or mimetypes.guess_type(fetched.url)[0] or ""
        check_media(fetched.data, mime, kind)
        by_content = self.prefix + "sha256:" + _digest(fetched.data)
        media_id = self.redis.get(by_content) or upload(
            self.api, s.phone_number_id, fetched.data, mime, Path(urlparse(fetched.url).path).name or kind
        )
        ttl = s.media_cache_ttl
        self.redis.set(self.prefix + "url:" + _digest(url), str(media_id), ex=ttl)
        self.redis.set(by_content, str(media_id), ex=ttl)
        return str(media_id)

    def _by_id(self, media: Media | None, kind: str) -> Media | None:
        """`media` sent by an uploaded id instead of its link; None when it stays as it is."""
        if media is None or media.link is None or not (media.upload or self.settings.media_upload_links):
            return None
        media_id = self.media_id(media.link, MediaType(kind))
        return media.model_copy(update={"id": media_id, "link": None, "upload": None})

    def resolve(self, intent: MessageIntent) -> MessageIntent:
        """The intent with its media links (a media message's, or a template's header parameter)
        replaced by uploaded media ids, where the link says `upload: true` or
        DISPATCH_MEDIA_UPLOAD_LINKS says so; otherwise unchanged."""
        if intent.template is not None:
            template = self._resolve_template(intent.template)
            return intent if template is None else intent.model_copy(update={"template": template})
        by_id = self._by_id(getattr(intent, intent.type), intent.type) if intent.type in MEDIA_KINDS else None
        return intent if by_id is None else intent.model_copy(update={intent.type: by_id})

    def _resolve_template(self, template: Template) -> Template | None:
        changed = False
        components = []
        for component in template.components or []:
            parameters = []
            for param in component.parameters or []:
                by_id = (
                    self._by_id(getattr(param, param.type), param.type) if param.type in MEDIA_KINDS else None
                )
                parameters.append(param if by_id is None else param.model_copy(update={param.type: by_id}))
                changed = changed or by_id is not None
            components.append(component.model_copy(update={"parameters": parameters or component.parameters}))
        return template.model_copy(update={"components": components}) if changed else None
