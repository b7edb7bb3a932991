"""The HTTP API's example messages: one intent per message kind, which `/openapi.json` (and so
Swagger UI at /docs, whose "Try it out" sends the first) carries. Which kinds there are is read
from the intent models' own schema as the document is built (`message_kinds`): a kind added to
the intents without an example here is named by the unit tests.
"""

from __future__ import annotations

from typing import Any


def example(summary: str, value: Any) -> dict[str, Any]:
    """An OpenAPI Example Object."""
    return {"summary": summary, "value": value}


TO = "+919876543210"
TASK_ID = "3f6c2b1e-8a4d-4c7e-9b20-5d1e7a9c4f08"
WAMID = "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSQzVGMkE0QjdEOEU5RjAxMjM0AA=="
INCOMING = "wamid.HBgMOTE5ODc2NTQzMjEwFQIAEhgUM0FCNTlDRTI3QkRFOUQ5QkFBNzIA"

# One intent's content per message kind: its `type`, and for an interactive message
# `interactive/<interactive.type>`. Which kinds there are is read from the models' own schema when
# the document is built (`message_kinds`): a kind added to the intents and missing here is a kind
# without an example, which the unit tests name.
CONTENT: dict[str, Any] = {
    "text": {"body": "Your order #42 has shipped", "preview_url": False},
    "image": {"link": "https://cdn.example.com/orders/42.png", "caption": "Your order, packed"},
    "video": {"link": "https://cdn.example.com/how-to-return.mp4", "caption": "How to return an item"},
    "audio": {"id": "1013859600285441"},
    "document": {
        "link": "https://cdn.example.com/invoices/42.pdf",
        "filename": "invoice-42.pdf",
        "caption": "Your invoice",
    },
    "sticker": {"id": "798882015472548"},
    "reaction": {"message_id": INCOMING, "emoji": "\U0001f44d"},
    "location": {"latitude": 19.076, "longitude": 72.8777, "name": "Shop", "address": "Fort, Mumbai"},
    "contacts": [
        {
            "name": {"formatted_name": "Asha Rao", "first_name": "Asha", "last_name": "Rao"},
            "phones": [{"phone": "+919876500011", "type": "WORK"}],
        }
    ],
    "interactive/button": {
        "type": "button",
        "body": {"text": "Deliver tomorrow between 10 and 12?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "slot-yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "slot-other", "title": "Another time"}},
            ]
        },
    },
    "interactive/list": {
        "type": "list",
        "header": {"type": "text", "text": "Menu"},
        "body": {"text": "Pick a dish"},
        "action": {
            "button": "Choose",
            "sections": [
                {"title": "Mains", "rows": [{"id": "biryani", "title": "Biryani", "description": "Spicy"}]}
            ],
        },
    },
    "interactive/cta_url": {
        "type": "cta_url",
        "body": {"text": "Track your parcel"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Track", "url": "https://shop.example.com/track/42"},
        },
    },
    "interactive/location_request_message": {
        "type": "location_request_message",
        "body": {"text": "Where should we deliver?"},
        "action": {"name": "send_location"},
    },
    "interactive/address_message": {
        "type": "address_message",
        "body": {"text": "Your delivery address, please"},
        "action": {
            "name": "address_message",
            "parameters": {"country": "IN", "values": {"name": "Asha Rao", "in_pin_code": "400001"}},
        },
    },
    "interactive/carousel": {
        "type": "carousel",
        "body": {"text": "This week's offers"},
        "action": {
            "cards": [
                {
                    "card_index": i,
                    "type": "cta_url",
                    "header": {"type": "image", "image": {"link": f"https://cdn.example.com/offer-{i}.png"}},
                    "body": {"text": f"Offer {i + 1}"},
                    "action": {
                        "name": "cta_url",
                        "parameters": {"display_text": "Shop", "url": f"https://shop.example.com/offer/{i}"},
                    },
                }
                for i in range(2)
            ]
        },
    },
    "interactive/product": {
        "type": "product",
        "body": {"text": "Back in stock"},
        "action": {"catalog_id": "194836987003835", "product_retailer_id": "sku-bread-01"},
    },
    "interactive/product_list": {
        "type": "product_list",
        "header": {"type": "text", "text": "Our bakery"},
        "body": {"text": "Fresh today"},
        "action": {
            "catalog_id": "194836987003835",
            "sections": [
                {
                    "title": "Breads",
                    "product_items": [
                        {"product_retailer_id": "sku-bread-01"},
                        {"product_retailer_id": "sku-bread-02"},
                    ],
                }
            ],
        },
    },
    "interactive/catalog_message": {
        "type": "catalog_message",
        "body": {"text": "Browse the catalog and order in the chat"},
        "action": {
            "name": "catalog_message",
            "parameters": {"thumbnail_product_retailer_id": "sku-bread-01"},
        },
    },
    "interactive/order_details": {
        "type": "order_details",
        "body": {"text": "Your order, ready to pay"},
        "action": {
            "name": "review_and_pay",
            "parameters": {
                "reference_id": "order-2024-0042",
                "type": "physical-goods",
                "payment_settings": [
                    {
                        "type": "payment_gateway",
                        "payment_gateway": {"type": "razorpay", "configuration_name": "shop-razorpay"},
                    }
                ],
                "currency": "INR",
                "total_amount": {"value": 50500, "offset": 100},
                "order": {
                    "status": "pending",
                    "items": [
                        {
                            "retailer_id": "sku-bread-01",
                            "name": "Sourdough",
                            "amount": {"value": 25000, "offset": 100},
                            "quantity": 2,
                        }
                    ],
                    "subtotal": {"value": 50000, "offset": 100},
                    "tax": {"value": 2500, "offset": 100, "description": "GST"},
                    "discount": {"value": 2000, "offset": 100, "discount_program_name": "WELCOME20"},
                },
            },
        },
    },
    "interactive/order_status": {
        "type": "order_status",
        "body": {"text": "Your order has shipped"},
        "action": {
            "name": "review_order",
            "parameters": {"reference_id": "order-2024-0042", "order": {"status": "shipped"}},
        },
    },
    "interactive/flow": {
        "type": "flow",
        "header": {"type": "text", "text": "Book a table"},
        "body": {"text": "Pick a day and a time"},
        "action": {
            "name": "flow",
            "parameters": {
                "flow_message_version": "3",
                "flow_token": "booking-42",
                "flow_id": "1191874388643027",
                "flow_cta": "Book now",
                "flow_action": "navigate",
                "flow_action_payload": {"screen": "BOOKING", "data": {"party_size": 2}},
            },
        },
    },
    "template": {
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
    },
}


def message_kinds(schemas: dict[str, Any]) -> list[str]:
    """Every message kind the intent models take, in their order: each `type`, an interactive
    message by its `interactive.type` (the discriminator of the union)."""
    properties = schemas["MessageIntent"]["properties"]
    union = next(s for s in properties["interactive"]["anyOf"] if "discriminator" in s)
    interactive = [f"interactive/{kind}" for kind in union["discriminator"]["mapping"]]
    return [kind for t in properties["type"]["enum"] for kind in (interactive if t == "interactive" else [t])]


def intent(kind: str) -> dict[str, Any]:
    type_ = kind.split("/", 1)[0]
    return {"to": TO, "type": type_, type_: CONTENT[kind]}


def intent_examples(schemas: dict[str, Any]) -> dict[str, Any]:
    examples = {
        kind.replace("/", "_"): example(kind.replace("/", ": "), intent(kind))
        for kind in message_kinds(schemas)
        if kind in CONTENT
    }
    examples["reply"] = example(
        "a text reply, sent once per key, from the sender `support`",
        {
            **intent("text"),
            "context": {"message_id": INCOMING},
            "idempotency_key": "order-42-shipped",
            "sender": "support",
            "biz_opaque_callback_data": "order=42",
        },
    )
    return examples
