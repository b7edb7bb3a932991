"""Media known before sending: Meta's type and size rules as data, the upload, and link -> media id.

`check_media` is pure and names the rule a file breaks. `upload` POSTs multipart to
`{api_url}/{phone_number_id}/media`. `fetch_link` fetches a link safely against server-side
request forgery: http(s) only; the host's addresses are resolved once and must all be public
(no loopback, private, link-local, metadata or reserved ranges) unless DISPATCH_MEDIA_ALLOW_HOSTS
names the host; the connection goes to the checked address (no second DNS answer can swap it);
every redirect is checked the same way; the body is capped while streaming; connect and read
time out. `MediaLinks` keeps a link's media id 29 days under the URL and the content's hash, and
uploads a link once however many intents carry it at the same time (a Redis lock). A link is
looked at again once DISPATCH_MEDIA_REVALIDATE_AFTER has passed since it was last seen: a
conditional GET (If-None-Match / If-Modified-Since, with the validators it answered last time)
that a 304 answers keeps the media id; new content at the same URL (a banner replaced) is
uploaded and sent from then on, the same content under another URL is not uploaded twice.
"""

from __future__ import annotations

import hashlib
import ipaddress
import mimetypes
import socket
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import cast
from urllib.parse import urljoin, urlparse

import certifi
import redis
import requests
import urllib3
from redis.typing import EncodableT, FieldT

from worker.delivery.client import InteraktClient
from worker.delivery.errors import InvalidIntent, PermanentError, TransientError
from worker.delivery.intents import Media, MessageIntent, Template
from worker.ops.logs import get_logger
from worker.settings import Settings

log = get_logger("whatsapp_dispatch.media")

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


@dataclass(frozen=True)
class Downloaded:
    """A customer's media on disk: where, what, and the sha256 it was checked against."""

    path: str
    mime_type: str
    sha256: str
    file_size: int


def download(
    client: InteraktClient,
    media_id: str,
    path: str | Path,
    max_bytes: int = 100 * MB,
    sha256: str | None = None,
) -> Downloaded:
    """Save a media id's file (an inbound photo, a payment screenshot) to `path`: its URL from
    `GET {api_url}/{media_id}`, fetched with the sender's credentials and no redirect followed
    (the token goes to the URL the API named, nowhere else), streamed with a size cap, and checked
    against the sha256 the API (or the webhook, `sha256`) gave. Nothing is left at `path` when a
    check fails; PermanentError says which."""
    if not media_id.isdigit():  # it becomes a path of the API's URL
        raise InvalidIntent.from_fields([("media_id", f"a media id is digits, given {media_id!r}")])
    info = client.call("GET", media_id).body
    url, expected = info.get("url"), sha256 or info.get("sha256")
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        raise PermanentError("the media lookup answered without a URL", {"code": None, "body": info})
    target = Path(path)
    partial = target.with_name(target.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with client.session.get(url, stream=True, timeout=client.timeout, allow_redirects=False) as resp:
            if resp.status_code != 200:
                raise PermanentError(f"media {media_id}: HTTP {resp.status_code}", {"code": None})
            with partial.open("wb") as out:
                for chunk in resp.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PermanentError(f"media {media_id}: more than {max_bytes} bytes", {"code": None})
                    digest.update(chunk)
                    out.write(chunk)
        if expected and digest.hexdigest() != expected:
            raise PermanentError(f"media {media_id}: its sha256 is not the one the API gave", {"code": None})
        partial.replace(target)
    except requests.RequestException as exc:
        reason = f"media {media_id}: {type(exc).__name__} while downloading"
        raise TransientError(reason, {"code": None}) from None
    finally:
        partial.unlink(missing_ok=True)
    return Downloaded(str(target), str(info.get("mime_type") or ""), digest.hexdigest(), size)


class LinkRefused(PermanentError):
    """A media link that was not fetched: not http(s), not public, too big, or not a 200 answer."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    mime_type: str
    url: str
    validators: dict[str, str] = field(default_factory=dict)  # etag, last_modified (as answered)
    not_modified: bool = False  # a 304 to a conditional GET: `data` is empty, keep what you had


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


def _conditional(validators: dict[str, str]) -> dict[str, str]:
    """The request headers that ask for the body only when it changed since it had these validators."""
    headers = {}
    if validators.get("etag"):
        headers["If-None-Match"] = validators["etag"]
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = validators["last_modified"]
    return headers


def _validators(resp: urllib3.BaseHTTPResponse) -> dict[str, str]:
    found = {"etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
    return {name: value for name, value in found.items() if value}


def fetch_link(
    url: str,
    allow_hosts: frozenset[str],
    max_bytes: int,
    connect_timeout: float,
    read_timeout: float,
    validators: dict[str, str] | None = None,
) -> Fetched:
    """GET a media link safely (see the module docstring); LinkRefused with the reason or HTTP status.
    With `validators` (an earlier answer's ETag, Last-Modified) the GET is conditional."""
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    conditional = _conditional(validators or {})
    for _ in range(MAX_REDIRECTS + 1):
        address, port = resolve_address(url, allow_hosts)
        parts = urlparse(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pool = _pool(url, address, port, timeout)
        try:
            resp = pool.urlopen(
                "GET",
                path,
                headers={"Host": parts.netloc.rsplit("@", 1)[-1], **conditional},  # never forward userinfo
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
            if resp.status == 304 and conditional:
                return Fetched(b"", "", url, validators or {}, not_modified=True)
            if resp.status != 200:
                raise _refused(url, f"HTTP {resp.status}", resp.status)
            data = _read_capped(resp, url, max_bytes)
            return Fetched(data, resp.headers.get("Content-Type", ""), url, _validators(resp))
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
    """Media ids of fetched links, per phone number id: `wa:media:{pnid}:link:{sha256(url)}` (the
    media id, the link's validators, when it was last seen) and `...:sha256:{sha256(content)}`,
    kept DISPATCH_MEDIA_CACHE_TTL (29 days; Meta keeps media 30)."""

    def __init__(self, client: redis.Redis, api: InteraktClient, settings: Settings) -> None:
        self.redis = client
        self.api = api
        self.settings = settings
        self.prefix = f"wa:media:{settings.phone_number_id}:"
        # Long enough for a fetch (every redirect) and an upload; waiters wait as long.
        self.lock_timeout = (MAX_REDIRECTS + 2) * (settings.connect_timeout + settings.read_timeout)

    def _key(self, url: str) -> str:
        return self.prefix + "link:" + _digest(url)

    def cached(self, url: str) -> dict[str, str]:
        """What is known of `url`: media_id, checked_at, and its validators; empty when nothing."""
        return cast(dict[str, str], self.redis.hgetall(self._key(url)))

    def _fresh(self, known: dict[str, str]) -> bool:
        checked = float(known.get("checked_at") or 0)
        return bool(known.get("media_id")) and time.time() - checked < self.settings.media_revalidate_after

    def media_id(self, url: str, kind: MediaType) -> str:
        """The media id for `url`: cached and fresh, or looked at again (fetched and uploaded when
        its content is new) once whoever else asks meanwhile."""
        known = self.cached(url)
        if self._fresh(known):
            return known["media_id"]
        lock = self.redis.lock(
            self.prefix + "lock:" + _digest(url),
            timeout=self.lock_timeout,
            blocking_timeout=self.lock_timeout,
        )
        try:
            with lock:
                known = self.cached(url)
                return known["media_id"] if self._fresh(known) else self._revalidate(url, kind, known)
        except redis.exceptions.LockError:  # another delivery held it past the timeout: try again later
            raise TransientError("another delivery is still uploading this link", {"code": None}) from None

    def _revalidate(self, url: str, kind: MediaType, known: dict[str, str]) -> str:
        s = self.settings
        limit = RULES[kind].animated_max_bytes or RULES[kind].max_bytes
        validators = {k: known[k] for k in ("etag", "last_modified") if known.get(k)}
        try:
            fetched = fetch_link(
                url, s.media_allowed_hosts, limit, s.connect_timeout, s.read_timeout, validators
            )
        except LinkRefused as exc:
            if not known.get("media_id"):
                raise
            # Seen before and unreachable now: what it was is still the best guess (stale-if-error).
            log.warning("media_link_unreachable", error=exc.message, media_id=known["media_id"])
            return known["media_id"]
        media_id = known["media_id"] if fetched.not_modified else self._upload(fetched, kind)
        self._remember(url, media_id, fetched.validators)
        return media_id

    def _upload(self, fetched: Fetched, kind: MediaType) -> str:
        """The media id of this content: uploaded, unless the same bytes were (under any URL)."""
        mime = fetched.mime_type.split(";")[0].strip() or mimetypes.guess_type(fetched.url)[0] or ""
        check_media(fetched.data, mime, kind)
        by_content = self.prefix + "sha256:" + _digest(fetched.data)
        name = Path(urlparse(fetched.url).path).name or kind
        media_id = str(
            self.redis.get(by_content)
            or upload(self.api, self.settings.phone_number_id, fetched.data, mime, name)
        )
        self.redis.set(by_content, media_id, ex=self.settings.media_cache_ttl)
        return media_id

    def _remember(self, url: str, media_id: str, validators: dict[str, str]) -> None:
        entry: dict[FieldT, EncodableT] = {"media_id": media_id, "checked_at": time.time()}
        entry.update(validators.items())
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._key(url))  # validators the new answer lacks must not stay
        pipe.hset(self._key(url), mapping=entry)
        pipe.expire(self._key(url), self.settings.media_cache_ttl)
        pipe.execute()

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
