"""Flow messages: an interactive message whose button opens a WhatsApp Flow.

Meta, "Sending a Flow" (https://developers.facebook.com/docs/whatsapp/flows/guides/sendingaflow)
and the Flow parameters of the "Interactive object": exactly one of `flow_id` and `flow_name`,
`flow_message_version` "3", a CTA of at most 30 characters, `mode` draft or published, and
`flow_action` navigate (optionally to a first screen, with non-empty data) or data_exchange
(no payload: the Flow's endpoint supplies the first screen).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from worker.delivery.intents.base import ApiObject, Short
from worker.delivery.intents.interactive import Body, Header, TextBlock


class FlowAction(StrEnum):
    NAVIGATE = "navigate"  # open the Flow on `flow_action_payload.screen` (the default)
    DATA_EXCHANGE = "data_exchange"  # ask the Flow's endpoint for the first screen


class FlowMode(StrEnum):
    DRAFT = "draft"  # an unpublished Flow, for testing
    PUBLISHED = "published"  # the default


class FlowActionPayload(ApiObject):
    screen: Short
    data: Annotated[dict[str, Any], Field(min_length=1)] | None = None  # "must be a non-empty object"


class FlowParameters(ApiObject):
    flow_message_version: Literal["3"]
    flow_token: Short | None = None  # Meta uses "unused" when none is given
    flow_id: Short | None = None
    flow_name: Short | None = None
    flow_cta: Annotated[str, Field(min_length=1, max_length=30)]
    mode: FlowMode | None = None
    flow_action: FlowAction | None = None
    flow_action_payload: FlowActionPayload | None = None

    @model_validator(mode="after")
    def _one_flow_and_its_action(self) -> FlowParameters:
        if (self.flow_id is None) == (self.flow_name is None):
            raise ValueError("exactly one of 'flow_id' or 'flow_name' is required")
        if self.flow_action is FlowAction.DATA_EXCHANGE and self.flow_action_payload is not None:
            raise ValueError("flow_action data_exchange takes no 'flow_action_payload' (only navigate does)")
        return self


class FlowMessageAction(ApiObject):
    name: Literal["flow"]
    parameters: FlowParameters


class FlowMessage(ApiObject):
    type: Literal["flow"]
    header: Header | None = None
    body: Body
    footer: TextBlock | None = None
    action: FlowMessageAction
