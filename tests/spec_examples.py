"""The request bodies of ../shared/seed/interakt-send-message-api.txt, with the placeholders filled in,
plus Meta's own shapes for the types the seed only names. Both the payload unit tests and the
end-to-end tests compare what is sent against these."""

TO = "+919999595313"

TEXT = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": TO,
    "type": "text",
    "text": {"preview_url": False, "body": "This is a test"},
}

IMAGE_ID = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": TO,
    "type": "image",
    "image": {"id": "MEDIA-OBJECT-ID"},
}

CATALOG = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": TO,
    "type": "interactive",
    "interactive": {
        "type": "catalog_message",
        "body": {"text": "Thanks for your order! Tell us what address you’d like this order delivered to."},  # noqa: RUF001 - the spec's own text
        "action": {"name": "catalog_message", "parameters": {"thumbnail_product_retailer_id": "2lc20305pt"}},
    },
}

PRODUCT = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": TO,
    "type": "interactive",
    "interactive": {
        "type": "product",
        "body": {"text": "optional body text"},
        "footer": {"text": "optional footer text"},
        "action": {"catalog_id": "CATALOG_ID", "product_retailer_id": "ID_TEST_ITEM_1"},
    },
}

PRODUCT_LIST = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": TO,
    "type": "interactive",
    "interactive": {
        "type": "product_list",
        "header": {"type": "text", "text": "header-content"},
        "body": {"text": "body-content"},
        "footer": {"text": "footer-content"},
        "action": {
            "catalog_id": "CATALOG_ID",
            "sections": [
                {
                    "title": "section-title",
                    "product_items": [{"product_retailer_id": "sku-1"}, {"product_retailer_id": "sku-2"}],
                },
                {
                    "title": "section-title-2",
                    "product_items": [{"product_retailer_id": "sku-3"}, {"product_retailer_id": "sku-4"}],
                },
            ],
        },
    },
}

# The seed writes "preview_url": "False" (a string) in its reply example; the API field is a boolean.
REPLY = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "context": {"message_id": "wamid.PREVIOUS"},
    "to": TO,
    "type": "text",
    "text": {"preview_url": False, "body": "your-text-message-content"},
}

READ = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.INCOMING"}

# Types the seed's intro lists, in Meta's Cloud API v17.0 shapes.
OTHERS = {
    "video": {"link": "https://example.com/clip.mp4", "caption": "A clip"},
    "audio": {"id": "AUDIO-ID"},
    "document": {"link": "https://example.com/invoice.pdf", "filename": "invoice.pdf", "caption": "Invoice"},
    "sticker": {"id": "STICKER-ID"},
    "reaction": {"message_id": "wamid.PREVIOUS", "emoji": "\U0001f44d"},
    "location": {"latitude": 19.076, "longitude": 72.8777, "name": "Office", "address": "Mumbai"},
    "contacts": [
        {
            "name": {"formatted_name": "Asha Rao", "first_name": "Asha"},
            "phones": [{"phone": "+919876543210", "type": "WORK"}],
        }
    ],
    "interactive": {
        "type": "button",
        "body": {"text": "Confirm your slot?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "no", "title": "No"}},
            ]
        },
    },
    "template": {
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
    },
}

LIST = {
    "type": "list",
    "header": {"type": "text", "text": "Menu"},
    "body": {"text": "Pick a dish"},
    "action": {
        "button": "Choose",
        "sections": [{"title": "Mains", "rows": [{"id": "r1", "title": "Biryani", "description": "Spicy"}]}],
    },
}


def message(type_: str, content: object) -> dict:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": TO,
        "type": type_,
        type_: content,
    }


def intent_of(payload: dict) -> dict:
    """The send_message keyword arguments that must produce `payload`."""
    return {k: v for k, v in payload.items() if k != "messaging_product"}


# Interactive kinds and template components of Meta's Cloud API docs beyond the seed (issue 25).
FLOW = {
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
}

CTA_URL = {
    "type": "cta_url",
    "body": {"text": "Track your parcel"},
    "action": {
        "name": "cta_url",
        "parameters": {"display_text": "Track", "url": "https://shop.example.com/track/A-42"},
    },
}

LOCATION_REQUEST = {
    "type": "location_request_message",
    "body": {"text": "Where should we deliver?"},
    "action": {"name": "send_location"},
}

ADDRESS = {
    "type": "address_message",
    "body": {"text": "Your delivery address, please"},
    "action": {
        "name": "address_message",
        "parameters": {"country": "IN", "values": {"name": "Asha Rao", "in_pin_code": "400001"}},
    },
}


def card(index: int, kind: str = "image") -> dict:
    return {
        "card_index": index,
        "type": "cta_url",
        "header": {
            "type": kind,
            kind: {"link": f"https://cdn.example.com/offer-{index}.{'png' if kind == 'image' else 'mp4'}"},
        },
        "body": {"text": f"Offer {index}"},
        "action": {
            "name": "cta_url",
            "parameters": {"display_text": "Shop", "url": f"https://shop.example.com/offer/{index}"},
        },
    }


CAROUSEL = {
    "type": "carousel",
    "body": {"text": "This week's offers"},
    "action": {"cards": [card(0), card(1)]},
}

ORDER_DETAILS = {
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
            "total_amount": {"value": 52000, "offset": 100},
            "order": {
                "status": "pending",
                "items": [
                    {
                        "retailer_id": "sku-bread-01",
                        "name": "Sourdough",
                        "amount": {"value": 25000, "offset": 100},
                        "sale_amount": {"value": 20000, "offset": 100},
                        "quantity": 2,
                    },
                    {
                        "retailer_id": "sku-jam-01",
                        "name": "Jam",
                        "amount": {"value": 10000, "offset": 100},
                        "quantity": 1,
                    },
                ],
                "subtotal": {"value": 50000, "offset": 100},
                "tax": {"value": 2500, "offset": 100, "description": "GST"},
                "shipping": {"value": 1500, "offset": 100},
                "discount": {"value": 2000, "offset": 100, "discount_program_name": "WELCOME20"},
            },
        },
    },
}

ORDER_STATUS = {
    "type": "order_status",
    "body": {"text": "Your order has shipped"},
    "action": {
        "name": "review_order",
        "parameters": {"reference_id": "order-2024-0042", "order": {"status": "shipped"}},
    },
}

INTERACTIVE_KINDS = [FLOW, CTA_URL, LOCATION_REQUEST, ADDRESS, CAROUSEL, ORDER_DETAILS, ORDER_STATUS]

LIMITED_TIME_OFFER = {
    "name": "flash_sale",
    "language": {"code": "en_US"},
    "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Asha"}]},
        {
            "type": "limited_time_offer",
            "parameters": [
                {"type": "limited_time_offer", "limited_time_offer": {"expiration_time_ms": 1767225600000}}
            ],
        },
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": 0,
            "parameters": [{"type": "coupon_code", "coupon_code": "FLASH25"}],
        },
        {"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "flash"}]},
    ],
}

CAROUSEL_TEMPLATE = {
    "name": "summer_carousel",
    "language": {"code": "en_US"},
    "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Asha"}]},
        {
            "type": "carousel",
            "cards": [
                {
                    "card_index": i,
                    "components": [
                        {
                            "type": "header",
                            "parameters": [
                                {"type": "image", "image": {"link": f"https://cdn.example.com/c{i}.png"}}
                            ],
                        },
                        {
                            "type": "button",
                            "sub_type": "quick_reply",
                            "index": 0,
                            "parameters": [{"type": "payload", "payload": f"card-{i}"}],
                        },
                    ],
                }
                for i in range(2)
            ],
        },
    ],
}
