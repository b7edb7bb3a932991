"""Media against the sandbox over HTTP and a real Redis: the rules named on refusal, the upload, the
SSRF-safe fetch (loopback and metadata addresses refused unless allowed), and link -> id once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests import spec_examples as spec
from tests.inprocess.conftest import ThreadSandbox
from tests.media_server import PNG, MediaServer, media_server
from worker.delivery.errors import InvalidIntent, PermanentError
from worker.delivery.media import LinkRefused, download, fetch_link, upload_file
from worker.delivery.send import MessageDelivery, SendServices
from worker.services import send_services

LIMIT = 5 * 2**20


def uploads(sandbox: ThreadSandbox) -> list[dict]:
    return [r for r in sandbox.state.requests if r.get("route") == "media"]


@pytest.fixture
def files() -> Iterator[MediaServer]:
    with media_server() as server:
        yield server


def test_a_file_is_checked_then_uploaded_and_can_be_shown_and_deleted(
    send: SendServices, sandbox: ThreadSandbox, tmp_path: Path
) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * LIMIT)
    with pytest.raises(InvalidIntent) as too_big:
        upload_file(send.sender(None).client, "1122334455", big)
    assert "over the limit (image: image/jpeg or image/png, at most 5 MB)" in str(too_big.value)
    with pytest.raises(InvalidIntent) as gif:
        upload_file(send.sender(None).client, "1122334455", b"GIF89a", "image/gif")
    assert "image/gif is not accepted" in str(
        gif.value
    ) and "sticker: image/webp, at most 100 KB (500 KB animated)" in str(gif.value)
    assert uploads(sandbox) == []  # nothing reached the API

    good = tmp_path / "receipt.png"
    good.write_bytes(PNG)
    media_id = upload_file(send.sender(None).client, "1122334455", good)
    shown = send.sender(None).client.call("GET", media_id).body
    assert shown["file_size"] == len(PNG) and shown["mime_type"] == "image/png"
    assert send.sender(None).client.call("DELETE", media_id).body == {"success": True}


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/receipt.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/receipt.png",
        "http://10.0.0.8/a.png",
        "http://localhost:{port}/receipt.png",
    ],
)
def test_links_to_non_public_addresses_are_refused(files: MediaServer, url: str) -> None:
    with pytest.raises(LinkRefused) as refused:
        fetch_link(url.format(port=files.port), frozenset(), LIMIT, 5, 20)
    assert "non-public address" in str(refused.value) and "DISPATCH_MEDIA_ALLOW_HOSTS" in str(refused.value)
    assert files.hits == []  # refused before connecting


def test_allowed_hosts_are_fetched_and_every_redirect_is_checked(files: MediaServer) -> None:
    allowed = frozenset({"127.0.0.1"})
    fetched = fetch_link(files.url("/receipt.png"), allowed, LIMIT, 5, 20)
    assert fetched.data == PNG and fetched.mime_type == "image/png"
    files.redirects["/hop.png"] = "http://169.254.169.254/latest/meta-data/"
    with pytest.raises(LinkRefused, match=r"169\.254\.169\.254 resolves to a non-public address"):
        fetch_link(files.url("/hop.png"), allowed, LIMIT, 5, 20)
    with pytest.raises(LinkRefused, match="only http and https"):
        fetch_link("file:///etc/passwd", allowed, LIMIT, 5, 20)
    with pytest.raises(LinkRefused, match="HTTP 404") as missing:
        fetch_link(files.url("/nope.png"), allowed, LIMIT, 5, 20)
    assert missing.value.info["http_status"] == 404
    with pytest.raises(LinkRefused, match="more than 5242880 bytes"):
        fetch_link(files.url("/endless.png"), allowed, LIMIT, 5, 20)


def test_a_link_is_uploaded_once_and_sent_by_id(
    send: SendServices, sandbox: ThreadSandbox, files: MediaServer
) -> None:
    settings = send.settings.model_copy(update={"media_allow_hosts": "127.0.0.1"})
    links = send_services(settings, send.sender(None).media.redis)
    image = {"link": files.url("/receipt.png"), "upload": True, "caption": "Receipt"}

    def deliver(i: int) -> dict:
        intent = {"to": spec.TO, "type": "image", "image": image, "idempotency_key": f"img-{i}"}
        return MessageDelivery(links, intent, f"img-{i}", requeues=0).run()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(deliver, range(40)))
    [upload] = uploads(sandbox)
    assert files.hits == ["/receipt.png"] and upload["problem"] is None
    media_ids = {r["body"]["image"]["id"] for r in sandbox.accepted()}
    assert len(results) == 40 and len(media_ids) == 1
    assert all(set(r["body"]["image"]) == {"id", "caption"} for r in sandbox.accepted())


def test_a_link_that_cannot_be_fetched_fails_permanently_before_any_send(
    send: SendServices, sandbox: ThreadSandbox, files: MediaServer
) -> None:
    intent = {"to": spec.TO, "type": "image", "image": {"link": files.url("/receipt.png"), "upload": True}}
    with pytest.raises(LinkRefused) as refused:  # loopback, not allowed by default
        MessageDelivery(send, intent, "img-refused", requeues=0).run()
    assert refused.value.kind == "permanent" and sandbox.state.requests == []
    assert [e["kind"] for e in send.dead.list()] == ["permanent"]


def test_a_template_header_link_is_uploaded_too(
    send: SendServices, sandbox: ThreadSandbox, files: MediaServer
) -> None:
    settings = send.settings.model_copy(update={"media_allow_hosts": "127.0.0.1", "media_upload_links": True})
    links = send_services(settings, send.sender(None).media.redis)
    header = {
        "type": "header",
        "parameters": [{"type": "image", "image": {"link": files.url("/receipt.png")}}],
    }
    body = {
        "type": "body",
        "parameters": [{"type": "text", "text": "Asha"}, {"type": "text", "text": "A-42"}],
    }
    button = {
        "type": "button",
        "sub_type": "url",
        "index": 0,
        "parameters": [{"type": "text", "text": "A-42"}],
    }
    template = {"name": "order_receipt", "language": {"code": "en_US"}, "components": [header, body, button]}
    MessageDelivery(links, {"to": spec.TO, "type": "template", "template": template}, "tpl-img", 0).run()
    [sent] = sandbox.accepted()
    [upload] = uploads(sandbox)
    sent_header = sent["body"]["template"]["components"][0]["parameters"][0]
    assert (
        sent_header == {"type": "image", "image": {"id": sent_header["image"]["id"]}}
        and upload["problem"] is None
    )
    assert sent["body"]["template"]["components"][1:] == [body, button]


def test_a_refused_link_is_named_without_its_query(send: SendServices) -> None:
    with pytest.raises(LinkRefused) as refused:
        fetch_link("http://127.0.0.1/r.png?X-Amz-Signature=s3cr3t", frozenset(), LIMIT, 5, 20)
    assert "s3cr3t" not in str(refused.value) and "http://127.0.0.1/r.png not fetched" in str(refused.value)


@pytest.mark.parametrize("validators", [True, False], ids=["etag", "no-validators"])
def test_a_banner_replaced_at_the_same_url_is_sent_new_once_looked_at_again(
    send: SendServices, sandbox: ThreadSandbox, files: MediaServer, r: redis.Redis, validators: bool
) -> None:
    """With the production DISPATCH_MEDIA_REVALIDATE_AFTER (300 s): within it the cached id is sent
    without a fetch; after it a conditional GET keeps the id when the file is the same (304), and
    new content at the URL is uploaded and sent. Without validators the body is fetched again and
    compared by hash: the same bytes are not uploaded twice."""
    settings = send.settings.model_copy(update={"media_allow_hosts": "127.0.0.1"})
    links = send_services(settings, r)
    if not validators:
        files.no_validators.add("/offer.png")
    files.files["/offer.png"] = (PNG, "image/png")
    image = {"link": files.url("/offer.png"), "upload": True}

    def sent_media_id(n: int) -> str:
        intent = {
            "to": spec.TO,
            "type": "image",
            "image": image,
            "idempotency_key": f"offer-{validators}-{n}",
        }
        MessageDelivery(links, intent, f"offer-{validators}-{n}", requeues=0).run()
        return sandbox.accepted()[-1]["body"]["image"]["id"]

    def age_the_cache() -> None:
        # As if the revalidation period had passed: a wait no user sits through in a test.
        for key in r.scan_iter("wa:media:*:link:*"):
            r.hset(key, "checked_at", time.time() - settings.media_revalidate_after - 1)

    first = sent_media_id(1)
    assert sent_media_id(2) == first and files.hits == ["/offer.png"]  # fresh: not fetched
    age_the_cache()
    assert sent_media_id(3) == first and len(uploads(sandbox)) == 1  # the same file: no upload
    assert files.not_modified == (["/offer.png"] if validators else [])
    files.files["/offer.png"] = (PNG + b"new banner", "image/png")  # replaced at the same URL
    age_the_cache()
    replaced = sent_media_id(4)
    assert replaced != first and len(uploads(sandbox)) == 2
    assert sent_media_id(5) == replaced  # and cached again


def test_a_media_id_is_downloaded_checked_and_capped(
    send: SendServices, sandbox: ThreadSandbox, tmp_path: Path
) -> None:
    """As an app saves a customer's photo: the id's URL from the API, the bytes checked against
    the sha256 it gave (or the webhook's); a mismatch or an oversize file leaves nothing behind."""
    client = send.sender(None).client
    media_id = upload_file(client, "1122334455", PNG, "image/png")
    saved = download(client, media_id, tmp_path / "photo.png")
    assert (tmp_path / "photo.png").read_bytes() == PNG
    assert (saved.mime_type, saved.file_size) == ("image/png", len(PNG))
    with pytest.raises(PermanentError, match="sha256"):
        download(client, media_id, tmp_path / "other.png", sha256="0" * 64)
    with pytest.raises(PermanentError, match="more than 100 bytes"):
        download(client, media_id, tmp_path / "big.png", max_bytes=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # no partial files
    with pytest.raises(InvalidIntent, match="media_id"):
        download(client, "../1122334455/messages", tmp_path / "x")
