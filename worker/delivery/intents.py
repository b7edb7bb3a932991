"""Message intents: the keyword arguments of `send_message`, validated against the API's rules.

Pure (no I/O). The models mirror the Cloud API's message object field by field, so
an intent can be copied from the spec; limits are those Meta documents for v17.0
("Messages" reference, "Interactive object", "Template object", "Supported media types").
Unknown fields are refused: a typo should fail at enqueue, not at Meta.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlparse

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.delivery.errors import InvalidIntent

MESSAGE_TYPES = (
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "reaction",
    "location",
    "contacts",
    "interactive",
    "template",
)

# File extensions Meta accepts per media type ("Supported media types"); size limits are
# enforced by Meta when it downloads the link (131052) since the size is unknown here.
MEDIA_EXTENSIONS: dict[str, frozenset[str]] = {
    "image": frozenset({"jpg", "jpeg", "png"}),
    "video": frozenset({"mp4", "3gp", "3gpp"}),
    "audio": frozenset({"aac", "amr", "mp3", "m4a", "ogg", "opus"}),
    "document": frozenset({"txt", "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "csv"}),
    "sticker": frozenset({"webp"}),
}

Short = Annotated[str, Field(min_length=1)]
SENDER_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SenderName = Annotated[str, Field(pattern=SENDER_NAME)]
Caption = Annotated[str, Field(max_length=1024)]  # media captions
BodyText = Annotated[str, Field(min_length=1, max_length=1024)]  # interactive bodies
HeaderText = Annotated[str, Field(min_length=1, max_length=60)]  # interactive headers and footers


class ApiObject(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- text, reaction, location, contacts ---------------------------------------------------------


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


# --- media --------------------------------------------------------------------------------------


class Media(ApiObject):
    """A media object: exactly one of an uploaded media `id` or a public `link`."""

    id: Short | None = None
    link: Short | None = None
    # Ask the worker to fetch the link, upload it and send by id (never part of the API payload).
    upload: bool | None = Field(None, exclude=True)

    media_type: ClassVar[str] = "image"

    @field_validator("link")
    @classmethod
    def _http_link(cls, link: str | None) -> str | None:
        if link is not None and (urlparse(link).scheme not in ("http", "https") or not urlparse(link).netloc):
            raise ValueError("must be a public http(s) URL")
        return link

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


# --- interactive --------------------------------------------------------------------------------


class TextBlock(ApiObject):
    text: HeaderText


class Body(ApiObject):
    text: BodyText


class Header(ApiObject):
    type: Literal["text", "image", "video", "document"]
    text: HeaderText | None = None
    image: Image | None = None
    video: Video | None = None
    document: Document | None = None

    @model_validator(mode="after")
    def _matching_object(self) -> Header:
        if getattr(self, self.type) is None:
            raise ValueError(f"header of type '{self.type}' needs a '{self.type}' object")
        return self


class TextHeader(ApiObject):
    type: Literal["text"]
    text: HeaderText


class ReplyId(ApiObject):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    title: Annotated[str, Field(min_length=1, max_length=20)]


class ReplyButton(ApiObject):
    type: Literal["reply"]
    reply: ReplyId


class ButtonAction(ApiObject):
    buttons: Annotated[list[ReplyButton], Field(min_length=1, max_length=3)]

    @model_validator(mode="after")
    def _unique(self) -> ButtonAction:
        for attr in ("id", "title"):
            values = [getattr(b.reply, attr) for b in self.buttons]
            if len(set(values)) != len(values):
                raise ValueError(f"reply button {attr}s must be unique")
        return self


class ListRow(ApiObject):
    id: Annotated[str, Field(min_length=1, max_length=200)]
    title: Annotated[str, Field(min_length=1, max_length=24)]
    description: Annotated[str, Field(max_length=72)] | None = None


class ListSection(ApiObject):
    title: Annotated[str, Field(min_length=1, max_length=24)] | None = None
    rows: Annotated[list[ListRow], Field(min_length=1, max_length=10)]


class ListAction(ApiObject):
    button: Annotated[str, Field(min_length=1, max_length=20)]
    sections: Annotated[list[ListSection], Field(min_length=1, max_length=10)]

    @model_validator(mode="after")
    def _rows(self) -> ListAction:
        rows = [row.id for s in self.sections for row in s.rows]
        if len(rows) > 10:
            raise ValueError(f"a list message has at most 10 rows in all (got {len(rows)})")
        if len(set(rows)) != len(rows):
            raise ValueError("row ids must be unique")
        if len(self.sections) > 1 and any(s.title is None for s in self.sections):
            raise ValueError("every section needs a title when there is more than one")
        return self


class ProductItem(ApiObject):
    product_retailer_id: Short


class ProductSection(ApiObject):
    title: Annotated[str, Field(min_length=1, max_length=24)] | None = None
    product_items: Annotated[list[ProductItem], Field(min_length=1, max_length=30)]


class ProductAction(ApiObject):
    catalog_id: Short
    product_retailer_id: Short


class ProductListAction(ApiObject):
    catalog_id: Short
    sections: Annotated[list[ProductSection], Field(min_length=1, max_length=10)]

    @model_validator(mode="after")
    def _products(self) -> ProductListAction:
        count = sum(len(s.product_items) for s in self.sections)
        if count > 30:
            raise ValueError(f"a product list has at most 30 products in all (got {count})")
        if len(self.sections) > 1 and any(s.title is None for s in self.sections):
            raise ValueError("every section needs a title when there is more than one")
        return self


class CatalogParameters(ApiObject):
    thumbnail_product_retailer_id: Short


class CatalogAction(ApiObject):
    name: Literal["catalog_message"]
    parameters: CatalogParameters | None = None


class ButtonMessage(ApiObject):
    type: Literal["button"]
    header: Header | None = None
    body: Body
    footer: TextBlock | None = None
    action: ButtonAction


class ListMessage(ApiObject):
    type: Literal["list"]
    header: TextHeader | None = None
    body: Body
    footer: TextBlock | None = None
    action: ListAction


class ProductMessage(ApiObject):
    type: Literal["product"]
    body: Body | None = None
    footer: TextBlock | None = None
    action: ProductAction


class ProductListMessage(ApiObject):
    type: Literal["product_list"]
    header: TextHeader
    body: Body
    footer: TextBlock | None = None
    action: ProductListAction


class CatalogMessage(ApiObject):
    type: Literal["catalog_message"]
    body: Body
    footer: TextBlock | None = None
    action: CatalogAction


Interactive = Annotated[
    ButtonMessage | ListMessage | ProductMessage | ProductListMessage | CatalogMessage,
    Field(discriminator="type"),
]


# --- template -----------------------------------------------------------------------------------


class Currency(ApiObject):
    fallback_value: Short
    code: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    amount_1000: int


class DateTime(ApiObject):
    fallback_value: Short


class TemplateParameter(ApiObject):
    type: Literal["text", "currency", "date_time", "image", "document", "video", "payload", "location"]
    parameter_name: str | None = None
    text: str | None = None
    currency: Currency | None = None
    date_time: DateTime | None = None
    image: Image | None = None
    document: Document | None = None
    video: Video | None = None
    payload: str | None = None
    location: Location | None = None

    @model_validator(mode="after")
    def _value_present(self) -> TemplateParameter:
        if getattr(self, self.type) is None:
            raise ValueError(f"a '{self.type}' parameter needs a '{self.type}' value")
        return self


class TemplateComponent(ApiObject):
    type: Literal["header", "body", "button"]
    sub_type: Literal["quick_reply", "url", "copy_code", "catalog", "mpm", "flow"] | None = None
    index: Annotated[int, Field(ge=0, le=9)] | Annotated[str, Field(pattern=r"^[0-9]$")] | None = None
    parameters: list[TemplateParameter] | None = None

    @model_validator(mode="after")
    def _button_fields(self) -> TemplateComponent:
        if self.type == "button" and (self.sub_type is None or self.index is None):
            raise ValueError("a button component needs 'sub_type' and 'index'")
        return self


class TemplateLanguage(ApiObject):
    code: Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")]
    policy: Literal["deterministic"] | None = None


class Template(ApiObject):
    name: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")]
    language: TemplateLanguage
    components: list[TemplateComponent] | None = None


# --- the intent ---------------------------------------------------------------------------------


class Context(ApiObject):
    message_id: Short


class MessageIntent(ApiObject):
    """One message to one recipient; `to` is normalised to E.164."""

    to: str
    type: Literal[MESSAGE_TYPES]  # type: ignore[valid-type]
    recipient_type: Literal["individual"] = "individual"
    context: Context | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    sender: SenderName | None = None  # which number sends it (worker.delivery.senders); `default` if none

    text: Text | None = None
    image: Image | None = None
    video: Video | None = None
    audio: Audio | None = None
    document: Document | None = None
    sticker: Sticker | None = None
    reaction: Reaction | None = None
    location: Location | None = None
    contacts: Annotated[list[Contact], Field(min_length=1)] | None = None
    interactive: Interactive | None = None
    template: Template | None = None

    @field_validator("to")
    @classmethod
    def _e164(cls, to: str) -> str:
        return normalize_phone(to)

    @model_validator(mode="after")
    def _one_object(self) -> MessageIntent:
        if getattr(self, self.type) is None:
            raise ValueError(f"type '{self.type}' needs a '{self.type}' object")
        extra = [t for t in MESSAGE_TYPES if t != self.type and getattr(self, t) is not None]
        if extra:
            raise ValueError(f"type '{self.type}' cannot also carry {', '.join(repr(t) for t in extra)}")
        if self.type == "reaction" and self.context is not None:
            raise ValueError("a reaction names its message in reaction.message_id, not in context")
        return self

    @property
    def content(self) -> Any:
        return getattr(self, self.type)


@functools.lru_cache(maxsize=4096)
def normalize_phone(number: str) -> str:
    """E.164 for a phone number or wa_id (digits with country code, '+' optional). Cached: a
    campaign recipient's number is parsed when its row becomes an intent and again when the
    intent is sent, and parsing cost 7 % of a campaign send's CPU (py-spy)."""
    raw = number.strip()
    try:
        parsed = phonenumbers.parse(raw if raw.startswith("+") else f"+{raw}", None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number with a country code (E.164, e.g. +919999595313)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def field_errors(exc: ValidationError, prefix: str = "", whole: str = "intent") -> list[tuple[str, str]]:
    """(field, reason) for each of pydantic's errors; `whole` names an error of the whole object."""
    found = []
    for error in exc.errors(include_input=False, include_url=False):
        parts = [
            str(p)
            for p in error["loc"]
            if not (isinstance(p, str) and p.startswith(("function-", "constrained-")))
        ]
        found.append((prefix + (".".join(parts) or whole), error["msg"].removeprefix("Value error, ")))
    return found


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    """`model` from `data`, or InvalidIntent naming each bad field (under `prefix`) and why."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidIntent.from_fields(field_errors(exc, prefix)) from None


def parse_intent(data: dict[str, Any]) -> MessageIntent:
    """Validate `send_message` keyword arguments; raise InvalidIntent naming each bad field."""
    return validate(MessageIntent, data)


class ReadReceipt(ApiObject):
    message_id: Short
    sender: SenderName | None = None


def parse_read(data: dict[str, Any]) -> ReadReceipt:
    return validate(ReadReceipt, data)
