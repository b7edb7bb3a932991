"""Interactive messages of buttons and lists, and the header, body and footer every interactive
message shares (Meta's "Interactive object")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, BodyText, HeaderText
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
