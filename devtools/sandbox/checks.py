"""The sandbox's own checks of what it is sent (a message object, a template message, an upload),
and the Meta-shaped error answers; pure functions, apart from new wamids' randomness."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import os
import re
from typing import Any

from devtools.sandbox.catalog import HTTP_TITLES, MEDIA_LIMITS, MESSAGE_TYPES


def new_wamid(to: str) -> str:
    raw = b"\x1c\x18\x0c" + to.lstrip("+").encode() + b"\x15\x02\x00\x11\x18\x12" + os.urandom(9)
    return "wamid." + base64.b64encode(raw).decode()


def error_answer(
    status: int, code: int, message: str, details: str | None = None
) -> tuple[int, dict[str, Any]]:
    err: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": base64.b32encode(os.urandom(10)).decode().rstrip("="),
    }
    if details:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return status, {"error": err}


def _placeholder_count(text: str | None) -> int:
    return len(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", text or "")))


def template_error(templates: list[dict[str, Any]], sent: dict[str, Any]) -> tuple[int, str] | None:
    """The sandbox's own check of a template message against its templates: (code, details) or None."""
    language = (sent.get("language") or {}).get("code")
    found = next((t for t in templates if t["name"] == sent.get("name") and t["language"] == language), None)
    if found is None:
        return 132001, f"template name ({sent.get('name')}) does not exist in {language}"
    status = {"PAUSED": 132015, "DISABLED": 132016}.get(found["status"], 132001)
    if found["status"] != "APPROVED":
        return status, f"template {found['name']} is {found['status']}"
    given = {c.get("type"): c.get("parameters") or [] for c in sent.get("components") or []}
    for part in found["components"]:
        kind = part["type"].lower()
        if kind not in ("header", "body"):
            continue
        params = given.get(kind, [])
        media = part.get("format", "TEXT") != "TEXT"
        wanted = 1 if media else _placeholder_count(part.get("text"))
        if len(params) != wanted:
            return (
                132000,
                f"number of {kind} parameters ({len(params)}) does not match the expected ({wanted})",
            )
        if media and params[0].get("type") != part["format"].lower():
            return 132012, f"header parameter of type {params[0].get('type')}, expected {part['format']}"
    return None


def media_error(fields: dict[str, Any]) -> str | None:
    """What is wrong with an upload's form fields, or None."""
    if fields.get("messaging_product") != "whatsapp":
        return "messaging_product must be 'whatsapp'"
    upload = fields.get("file")
    if not isinstance(upload, dict):
        return "the 'file' part is required"
    mime = upload["mime_type"]
    kind = next((k for k, (types, _) in MEDIA_LIMITS.items() if mime in types), None)
    if kind is None or fields.get("type") not in (mime, kind):
        return f"file must have a supported type (got {mime}, type {fields.get('type')})"
    if len(upload["data"]) > MEDIA_LIMITS[kind][1]:
        return f"{kind} is larger than {MEDIA_LIMITS[kind][1]} bytes"
    return None


def parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """Form fields by name; a file part as {"data", "mime_type", "filename"}."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            fields[str(name)] = {
                "data": data,
                "mime_type": part.get_content_type(),
                "filename": part.get_filename(),
            }
        else:
            fields[str(name)] = data.decode()
    return fields


def check_message(body: Any) -> str | None:
    """The sandbox's own reading of the spec; returns what is wrong, or None."""
    if not isinstance(body, dict):
        return "the request body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be 'whatsapp'"
    if body.get("status") == "read":
        return (
            None
            if isinstance(body.get("message_id"), str) and body["message_id"]
            else "message_id is required"
        )
    if not re.fullmatch(r"\+?\d{8,15}", str(body.get("to", ""))):
        return "to must be a phone number or wa_id"
    if body.get("recipient_type", "individual") != "individual":
        return "recipient_type must be 'individual'"
    return _check_content(body)


def _check_content(body: dict[str, Any]) -> str | None:
    """The message object of the body's `type`, and no other."""
    kind = body.get("type")
    if kind not in MESSAGE_TYPES:
        return f"unknown message type {kind!r}"
    content = body.get(kind)
    if kind == "contacts" and not (isinstance(content, list) and content):
        return "contacts must be a non-empty array"
    if kind != "contacts" and not isinstance(content, dict):
        return f"the '{kind}' object is required"
    others = MESSAGE_TYPES & set(body) - {kind}
    if others:
        return f"unexpected objects for type {kind}: {sorted(others)}"
    if "context" in body and not (isinstance(body["context"], dict) and body["context"].get("message_id")):
        return "context.message_id is required"
    return None


def fault_answer(rule: dict[str, Any]) -> tuple[int, Any, dict[str, str] | None]:
    """The error a fault rule answers with: a Meta error body for a `code`, a bare status otherwise."""
    status = int(rule.get("status") or 400)
    code = rule.get("code")
    headers = {"Retry-After": str(rule["retry_after"])} if rule.get("retry_after") is not None else None
    if code is None:
        return status, {"error": {"message": HTTP_TITLES.get(status, "error"), "type": "HTTP"}}, headers
    status, err = error_answer(
        status, int(code), rule.get("message", f"sandbox fault {code}"), rule.get("details")
    )
    return status, err, headers
