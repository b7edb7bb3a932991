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
