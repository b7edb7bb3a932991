"""Interactive messages of buttons, lists, a link, a location or address request, and carousels,
and the header, body and footer every interactive message shares (Meta's "Interactive object").

Sources: "Interactive CTA URL button messages"
(https://developers.facebook.com/docs/whatsapp/cloud-api/messages/interactive-cta-url-messages),
"Interactive location request messages" (.../messages/location-request-messages), "Address
messages" (.../messages/address-messages: India only), "Interactive media carousel messages"
(.../messages/interactive-media-carousel-messages: 2 to 10 cards, every card's header of one type).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, BodyText, HeaderText, HttpUrl, Short
from worker.delivery.intents.text_media import Document, Image, Video


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


class CtaUrlParameters(ApiObject):
    display_text: Annotated[str, Field(min_length=1, max_length=20)]
    url: HttpUrl


class CtaUrlAction(ApiObject):
    name: Literal["cta_url"]
    parameters: CtaUrlParameters


class CtaUrlMessage(ApiObject):
    """A button that opens a URL, so the URL need not sit raw in the body."""

    type: Literal["cta_url"]
    header: Header | None = None
    body: Body
    footer: TextBlock | None = None
    action: CtaUrlAction


class LocationRequestAction(ApiObject):
    name: Literal["send_location"]


class LocationRequestMessage(ApiObject):
    """A "Send location" button; the reply arrives as a location message."""

    type: Literal["location_request_message"]
    body: Body
    action: LocationRequestAction


class SavedAddress(ApiObject):
    id: Short
    value: dict[str, str]


class AddressParameters(ApiObject):
    country: Literal["IN"]  # address messages are available in India only
    values: dict[str, str] | None = None  # prefilled fields (name, phone_number, in_pin_code, ...)
    validation_errors: dict[str, str] | None = None  # a field -> why its last value was refused
    saved_addresses: list[SavedAddress] | None = None


class AddressAction(ApiObject):
    name: Literal["address_message"]
    parameters: AddressParameters


class AddressMessage(ApiObject):
    """A form for a delivery address, prefilled with `values`."""

    type: Literal["address_message"]
    header: TextHeader | None = None
    body: Body
    footer: TextBlock | None = None
    action: AddressAction


class CardHeader(ApiObject):
    type: Literal["image", "video"]
    image: Image | None = None
    video: Video | None = None

    @model_validator(mode="after")
    def _matching_object(self) -> CardHeader:
        if getattr(self, self.type) is None:
            raise ValueError(f"header of type '{self.type}' needs a '{self.type}' object")
        return self


class CardBody(ApiObject):
    text: Annotated[str, Field(min_length=1, max_length=160)]


class CarouselCard(ApiObject):
    card_index: Annotated[int, Field(ge=0, le=9)]
    type: Literal["cta_url"]
    header: CardHeader
    body: CardBody | None = None
    action: CtaUrlAction


class CarouselAction(ApiObject):
    cards: Annotated[list[CarouselCard], Field(min_length=2, max_length=10)]

    @model_validator(mode="after")
    def _cards(self) -> CarouselAction:
        if len({card.header.type for card in self.cards}) > 1:
            raise ValueError("every card's header must be of the same type (all image or all video)")
        indexes = [card.card_index for card in self.cards]
        if len(set(indexes)) != len(indexes):
            raise ValueError("each card needs its own card_index")
        return self


class CarouselMessage(ApiObject):
    """Horizontally scrolling cards, each a media header and a URL button, under one body."""

    type: Literal["carousel"]
    body: Body
    action: CarouselAction
