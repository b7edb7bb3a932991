"""Template messages: the template's name and language, and the parameters of its components
(Meta's "Template object" and "Components",
https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages#template-object).

A `date_time` parameter is Meta's whole object (a fallback, and the parts the Cloud API ignores in
favour of it). A button's `sub_type` is taken in Meta's casing too ("CATALOG", as its catalog
template example writes it) and passed on as written. A copy-code button's coupon code (at most 15
characters) and the `action` of catalog, multi-product and Flow buttons appear only there.
`limited_time_offer` and `carousel` components are those of Meta's "Limited-time offer templates"
and "Media card carousel templates" (2 to 10 cards).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from worker.delivery.intents.base import ApiObject, Short
from worker.delivery.intents.commerce import ProductSection
from worker.delivery.intents.text_media import Document, Image, Location, Video


class ButtonSubType(StrEnum):
    QUICK_REPLY = "quick_reply"
    URL = "url"
    COPY_CODE = "copy_code"
    CATALOG = "catalog"
    MPM = "mpm"  # a multi-product message button
    FLOW = "flow"


class ParameterType(StrEnum):
    TEXT = "text"
    CURRENCY = "currency"
    DATE_TIME = "date_time"
    IMAGE = "image"
    DOCUMENT = "document"
    VIDEO = "video"
    LOCATION = "location"
    PAYLOAD = "payload"
    COUPON_CODE = "coupon_code"
    ACTION = "action"
    LIMITED_TIME_OFFER = "limited_time_offer"


# Where the parameter types that belong to one kind of component may appear: a coupon code in a
# copy-code button, an action in a catalog, multi-product or Flow button, an offer's expiry in the
# limited-time-offer component (which takes nothing else). Other types go anywhere the registry
# check (worker.delivery.templates) finds they fit.
PARAMETER_PLACES: dict[ParameterType, frozenset[ButtonSubType | str]] = {
    ParameterType.COUPON_CODE: frozenset({ButtonSubType.COPY_CODE}),
    ParameterType.ACTION: frozenset({ButtonSubType.CATALOG, ButtonSubType.MPM, ButtonSubType.FLOW}),
    ParameterType.LIMITED_TIME_OFFER: frozenset({"limited_time_offer"}),
}


def button_sub_type(sub_type: str) -> str:
    """A button kind in either casing, kept as written (Meta's own examples use both)."""
    if sub_type.lower() not in set(ButtonSubType):
        raise ValueError(f"must be one of {', '.join(ButtonSubType)} (in either case)")
    return sub_type


class Currency(ApiObject):
    fallback_value: Short
    code: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    amount_1000: int


class DateTime(ApiObject):
    fallback_value: Short  # what the Cloud API shows: it always uses the fallback
    day_of_week: Annotated[int, Field(ge=1, le=7)] | None = None
    year: int | None = None
    month: Annotated[int, Field(ge=1, le=12)] | None = None
    day_of_month: Annotated[int, Field(ge=1, le=31)] | None = None
    hour: Annotated[int, Field(ge=0, le=23)] | None = None
    minute: Annotated[int, Field(ge=0, le=59)] | None = None
    calendar: Literal["GREGORIAN", "SOLAR_HIJRI"] | None = None
    timestamp: int | None = None


class TemplateButtonAction(ApiObject):
    """The `action` parameter of a catalog, multi-product or Flow button."""

    thumbnail_product_retailer_id: Short | None = None  # catalog and mpm
    sections: Annotated[list[ProductSection], Field(min_length=1, max_length=10)] | None = None  # mpm
    flow_token: Short | None = None  # flow
    flow_action_data: dict[str, Any] | None = None  # flow: the first screen's data


class LimitedTimeOffer(ApiObject):
    expiration_time_ms: Annotated[int, Field(ge=0)]  # when the offer's countdown ends, Unix ms


class TemplateParameter(ApiObject):
    type: ParameterType
    parameter_name: str | None = None
    text: str | None = None
    currency: Currency | None = None
    date_time: DateTime | None = None
    image: Image | None = None
    document: Document | None = None
    video: Video | None = None
    location: Location | None = None
    payload: str | None = None
    coupon_code: Annotated[str, Field(min_length=1, max_length=15)] | None = None
    action: TemplateButtonAction | None = None
    limited_time_offer: LimitedTimeOffer | None = None

    @model_validator(mode="after")
    def _value_present(self) -> TemplateParameter:
        if getattr(self, self.type) is None:
            raise ValueError(f"a '{self.type}' parameter needs a '{self.type}' value")
        return self


class TemplateCard(ApiObject):
    """One card of a carousel template: its header's media, and its body and button parameters."""

    card_index: Annotated[int, Field(ge=0, le=9)]
    components: list[TemplateComponent]


class TemplateComponent(ApiObject):
    type: Literal["header", "body", "button", "limited_time_offer", "carousel"]
    sub_type: Annotated[str, AfterValidator(button_sub_type)] | None = None
    index: Annotated[int, Field(ge=0, le=9)] | Annotated[str, Field(pattern=r"^[0-9]$")] | None = None
    parameters: list[TemplateParameter] | None = None
    cards: Annotated[list[TemplateCard], Field(min_length=2, max_length=10)] | None = None

    @property
    def button(self) -> ButtonSubType | None:
        """The button's kind, whatever the casing of its sub_type."""
        return ButtonSubType(self.sub_type.lower()) if self.sub_type else None

    @model_validator(mode="after")
    def _fields_of_its_type(self) -> TemplateComponent:
        if self.type == "button" and (self.button is None or self.index is None):
            raise ValueError("a button component needs 'sub_type' and 'index'")
        if (self.type == "carousel") != (self.cards is not None):
            raise ValueError("a carousel component, and only that, carries 'cards'")
        place = self.button or self.type
        for param in self.parameters or []:
            places = PARAMETER_PLACES.get(param.type)
            if places is not None and place not in places:
                raise ValueError(
                    f"a '{param.type}' parameter belongs in {' or '.join(sorted(places))}, not {place}"
                )
            if self.type == "limited_time_offer" and param.type != ParameterType.LIMITED_TIME_OFFER:
                raise ValueError(f"a limited_time_offer component takes only its offer, given '{param.type}'")
        return self


TemplateCard.model_rebuild()  # its components are TemplateComponents, defined after it


class TemplateLanguage(ApiObject):
    code: Annotated[str, Field(pattern=r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")]
    policy: Literal["deterministic"] | None = None


class Template(ApiObject):
    name: Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")]
    language: TemplateLanguage
    components: list[TemplateComponent] | None = None
