"""Text, reaction, location, contacts and media messages (Meta's "Messages" reference and
"Supported media types")."""

from __future__ import annotations

from typing import Annotated, ClassVar
from urllib.parse import urlparse

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, Caption, HttpUrl, Short

# File extensions Meta accepts per media type ("Supported media types"); size limits are
# enforced by Meta when it downloads the link (131052) since the size is unknown here.
MEDIA_EXTENSIONS: dict[str, frozenset[str]] = {
    "image": frozenset({"jpg", "jpeg", "png"}),
    "video": frozenset({"mp4", "3gp", "3gpp"}),
    "audio": frozenset({"aac", "amr", "mp3", "m4a", "ogg", "opus"}),
    "document": frozenset({"txt", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "csv"}),
    "sticker": frozenset({"webp"}),
}


class Text(ApiObject):
    body: Annotated[str, Field(min_length=1, max_length=4096)]
    preview_url: bool | None = None


class Reaction(ApiObject):
    message_id: Short
    emoji: str  # an empty string removes a reaction


class Location(ApiObject):
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    name: str | None = None
    address: str | None = None


class ContactName(ApiObject):
    formatted_name: Short
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    suffix: str | None = None
    prefix: str | None = None


class Contact(ApiObject):
    name: ContactName
    phones: list[dict[str, str]] | None = None
    emails: list[dict[str, str]] | None = None
    addresses: list[dict[str, str]] | None = None
    urls: list[dict[str, str]] | None = None
    org: dict[str, str] | None = None
    birthday: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None


class Media(ApiObject):
    """A media object: exactly one of an uploaded media `id` or a public `link`."""

    id: Short | None = None
    link: HttpUrl | None = None
    # Ask the worker to fetch the link, upload it and send by id (never part of the API payload).
    upload: bool | None = Field(None, exclude=True)

    media_type: ClassVar[str] = "image"

    @model_validator(mode="after")
    def _one_source(self) -> Media:
        if (self.id is None) == (self.link is None):
            raise ValueError("exactly one of 'id' or 'link' is required")
        if self.upload and self.link is None:
            raise ValueError("'upload' applies to a 'link'")
        if self.link:
            path = urlparse(self.link).path
            ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else None
            allowed = MEDIA_EXTENSIONS[self.media_type]
            if ext is not None and ext not in allowed:
                raise ValueError(
                    f"link: .{ext} is not a supported {self.media_type} type ({', '.join(sorted(allowed))})"
                )
        return self


class Image(Media):
    media_type: ClassVar[str] = "image"
    caption: Caption | None = None


class Video(Media):
    media_type: ClassVar[str] = "video"
    caption: Caption | None = None


class Audio(Media):
    media_type: ClassVar[str] = "audio"


class Sticker(Media):
    media_type: ClassVar[str] = "sticker"


class Document(Media):
    media_type: ClassVar[str] = "document"
    caption: Caption | None = None
    filename: Short | None = None
