"""Meta's media rules: the type and size a file may have, and the rule named when it breaks one."""

from __future__ import annotations

import pytest

from worker.delivery.errors import InvalidIntent
from worker.delivery.media import KB, MB, MediaType, check_media

STATIC_WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 8
ANIMATED_WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 4 + b"\x02" + b"\x00" * 9


def reason(data: bytes, mime: str, kind: MediaType | None = None) -> str:
    with pytest.raises(InvalidIntent) as refused:
        check_media(data, mime, kind)
    [error] = refused.value.errors
    assert error["field"] == "file"
    return error["reason"]


def test_the_type_follows_the_mime_type_and_the_limit_is_inclusive() -> None:
    assert check_media(b"x" * 5 * MB, "image/jpeg") is MediaType.IMAGE
    assert check_media(b"x", "video/3gpp") is MediaType.VIDEO
    assert check_media(b"x", "audio/ogg; codecs=opus") is MediaType.AUDIO
    assert check_media(b"x", "application/pdf", MediaType.DOCUMENT) is MediaType.DOCUMENT


def test_sizes_name_the_rule() -> None:
    assert reason(b"x" * (5 * MB + 1), "image/png") == (
        "5242881 bytes is over the limit (image: image/jpeg or image/png, at most 5 MB)"
    )
    assert "at most 16 MB" in reason(b"x" * (16 * MB + 1), "video/mp4")
    assert "at most 100 MB" in reason(b"x" * (100 * MB + 1), "text/plain")


def test_stickers_are_100_kb_or_500_kb_when_animated() -> None:
    big_static = STATIC_WEBP + b"\x00" * 200 * KB
    assert "sticker: image/webp, at most 100 KB (500 KB animated)" in reason(big_static, "image/webp")
    assert check_media(ANIMATED_WEBP + b"\x00" * 200 * KB, "image/webp") is MediaType.STICKER
    assert "over the limit" in reason(ANIMATED_WEBP + b"\x00" * 500 * KB, "image/webp")


def test_types_meta_does_not_take_are_refused_with_every_rule() -> None:
    gif = reason(b"GIF89a", "image/gif")
    assert gif.startswith("image/gif is not accepted (image: image/jpeg or image/png, at most 5 MB; ")
    assert reason(b"x", "image/png", MediaType.VIDEO) == (
        "image/png is not accepted (video: video/mp4 or video/3gpp, at most 16 MB)"
    )
    assert reason(b"x", "").startswith("(no MIME type) is not accepted")
