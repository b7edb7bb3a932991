"""Intent -> the exact JSON body the Cloud API expects. Pure functions, no I/O."""

from __future__ import annotations

from typing import Any

from worker.delivery.callback_data import with_tracker
from worker.delivery.intents import MessageIntent, ReadReceipt


def _dump(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_dump(item) for item in obj]
    return obj.model_dump(mode="json", exclude_none=True)


def message_payload(intent: MessageIntent, key: str | None = None) -> dict[str, Any]:
    """The spec's message object: messaging_product, recipient_type, to, type, <type>, and context
    and biz_opaque_callback_data when the intent has them. `key`: the idempotency key the
    tracker names in biz_opaque_callback_data, before the app's own value (`callback_data`)."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": intent.recipient_type,
        "to": intent.to,
        "type": intent.type,
    }
    if intent.context is not None:
        payload["context"] = _dump(intent.context)
    own = intent.biz_opaque_callback_data
    callback_data = with_tracker(key, own) if key is not None else own
    if callback_data is not None:
        payload["biz_opaque_callback_data"] = callback_data
    payload[intent.type] = _dump(intent.content)
    return payload


def read_payload(receipt: ReadReceipt) -> dict[str, Any]:
    """Mark-as-read: a POST to the same /messages route (the spec's curl says GET by mistake), with
    the typing indicator when asked for."""
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": receipt.message_id,
    }
    if receipt.typing_indicator is not None:
        payload["typing_indicator"] = _dump(receipt.typing_indicator)
    return payload
