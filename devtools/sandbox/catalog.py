"""What the sandbox knows, as data: the message types, its example templates (as Meta lists
them), Meta's media limits, and the titles of the codes it answers with."""

from __future__ import annotations

from typing import Any

from worker.delivery.intents import MESSAGE_TYPES as TYPES
from worker.delivery.media import RULES

MESSAGE_TYPES = frozenset(TYPES)  # the spec's vocabulary; the checks below are the sandbox's own


def _template(name: str, category: str, *components: dict[str, Any], **extra: str) -> dict[str, Any]:
    """A template as `message_templates` lists it (APPROVED, en_US unless `extra` says otherwise)."""
    return {
        "name": name,
        "language": "en_US",
        "status": "APPROVED",
        "category": category,
        "components": list(components),
        **extra,
    }


def _body(text: str) -> dict[str, Any]:
    return {"type": "BODY", "text": text}


EXAMPLE_TEMPLATES: list[dict[str, Any]] = [
    _template("hello_world", "UTILITY", _body("Hello World")),
    _template("order_update", "UTILITY", _body("Hi {{1}}, your order has shipped.")),
    _template(
        "order_receipt",
        "UTILITY",
        {"type": "HEADER", "format": "IMAGE"},
        _body("Hi {{1}}, order {{2}} is confirmed."),
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Track", "url": "https://example.com/track/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Help"},
            ],
        },
    ),
    _template(
        "welcome_named",
        "MARKETING",
        _body("Welcome {{first_name}}, from {{city}}!"),
        parameter_format="NAMED",
    ),
    _template("summer_sale", "MARKETING", _body("Sale: {{1}} off"), status="PAUSED"),
    *(
        _template(
            f"login_{otp_type.lower()}",
            "AUTHENTICATION",
            _body("*{{1}}* is your verification code. For your security, do not share this code."),
            {"type": "FOOTER", "text": "This code expires in 10 minutes.", "code_expiration_minutes": 10},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "OTP", "otp_type": otp_type, "text": "Copy code", **extra}],
            },
        )
        for otp_type, extra in (
            ("COPY_CODE", {}),
            ("ONE_TAP", {"autofill_text": "Autofill", "package_name": "com.example.shop"}),
            (
                "ZERO_TAP",
                {
                    "autofill_text": "Autofill",
                    "package_name": "com.example.shop",
                    "zero_tap_terms_accepted": True,
                },
            ),
        )
    ),
]

# Meta's media rules are data (MIME types per type, and size limits); the checks below are the
# sandbox's own. A sticker up to the animated limit: the sandbox does not parse WebP.
MEDIA_LIMITS: dict[str, tuple[tuple[str, ...], int]] = {
    str(kind): (rule.mime_types, rule.animated_max_bytes or rule.max_bytes) for kind, rule in RULES.items()
}

CODE_TITLES = {
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is paused",
    132016: "Template is disabled",
}

STATUSES = ("sent", "delivered", "read")

WEBHOOK_DEFAULTS: dict[str, Any] = {"url": None, "secret": None, "delays": [0.5, 1.5, 3.0], "fail": []}

HTTP_TITLES = {500: "Internal server error", 429: "Rate limit hit", 400: "Invalid parameter"}
