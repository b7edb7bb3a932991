"""The intent: one message to one recipient, of one of the API's types, and the read receipt.

An intent may be Meta's message object copied whole: `messaging_product` "whatsapp" is taken (and
no other product), no `type` means text as the Cloud API has it, and `biz_opaque_callback_data`
(at most 512 characters, "Messages" reference) is passed on for the status webhooks to return.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from worker.delivery.intents.base import ApiObject, SenderName, Short, normalize_phone, validate
from worker.delivery.intents.commerce import (
    CatalogMessage,
    OrderDetailsMessage,
    OrderStatusMessage,
    ProductListMessage,
    ProductMessage,
)
from worker.delivery.intents.flows import FlowMessage
from worker.delivery.intents.interactive import (
    AddressMessage,
    ButtonMessage,
    CarouselMessage,
    CtaUrlMessage,
    ListMessage,
    LocationRequestMessage,
)
from worker.delivery.intents.templates import Template
from worker.delivery.intents.text_media import (
    Audio,
    Contact,
    Document,
    Image,
    Location,
    Reaction,
    Sticker,
    Text,
    Video,
)

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

Interactive = Annotated[
    ButtonMessage
    | ListMessage
    | CtaUrlMessage
    | LocationRequestMessage
    | AddressMessage
    | CarouselMessage
    | ProductMessage
    | ProductListMessage
    | CatalogMessage
    | OrderDetailsMessage
    | OrderStatusMessage
    | FlowMessage,
    Field(discriminator="type"),
]


class Context(ApiObject):
    message_id: Short


class MessageIntent(ApiObject):
    """One message to one recipient; `to` is normalised to E.164."""

    messaging_product: Literal["whatsapp"] | None = None  # the payload always names it
    to: str
    type: Literal[MESSAGE_TYPES] = "text"  # type: ignore[valid-type]
    recipient_type: Literal["individual"] = "individual"
    context: Context | None = None
    biz_opaque_callback_data: Annotated[str, Field(max_length=512)] | None = None
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
        if "type" not in self.model_fields_set and self.text is None:
            carried = [t for t in MESSAGE_TYPES if getattr(self, t) is not None]
            if carried:
                raise ValueError(
                    f"no 'type' means text (the Cloud API's default), and this message carries"
                    f" {', '.join(repr(t) for t in carried)}: name its type"
                )
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


def parse_intent(data: dict[str, Any]) -> MessageIntent:
    """Validate `send_message` keyword arguments; raise InvalidIntent naming each bad field."""
    return validate(MessageIntent, data)


class TypingIndicator(ApiObject):
    type: Literal["text"]


class ReadReceipt(ApiObject):
    """Mark an incoming message read; with a typing indicator, the customer also sees "typing..."
    (until the reply is sent, or 25 seconds), as Meta's "Typing indicators" guide has it."""

    message_id: Short
    sender: SenderName | None = None
    typing_indicator: TypingIndicator | None = None


def parse_read(data: dict[str, Any]) -> ReadReceipt:
    return validate(ReadReceipt, data)
