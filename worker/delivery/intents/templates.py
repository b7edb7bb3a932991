"""Template messages: the template's name and language, and the parameters of its components
(Meta's "Template object" and "Components")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, Short
from worker.delivery.intents.text_media import Document, Image, Location, Video


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
