"""The sender's half of webhooks, for the sandbox, the tests and the benchmark: Meta-shaped
bodies, signed the way Meta signs them, posted with Meta's habit of retrying until a 200.

`Poster` is a thread with a queue of posts due at given times; a post that does not get a 200
(503 while Redis is away, a refused connection) is tried again every RETRY_EVERY seconds until
it does or MAX_TRIES have failed. Every answer is recorded for the tests to read.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

RETRY_EVERY = 0.5
MAX_TRIES = 120


def _envelope(phone_number_id: str, value: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"value": value, "field": field}]}],
    }


def status_body(
    phone_number_id: str,
    wamid: str,
    status: str,
    recipient_id: str,
    at: float | None = None,
    error: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    callback_data: str | None = None,
) -> dict[str, Any]:
    """A Meta status webhook for one wamid; `error` (code, title, message, details) for `failed`;
    `pricing` (billable, pricing_model, category, type) as each of sent, delivered and read
    carries it; `callback_data`: the message's biz_opaque_callback_data, which Meta echoes in
    every status of a message sent with one."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(at or time.time())),
        "recipient_id": recipient_id.lstrip("+"),
    }
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if pricing:
        item["pricing"] = pricing
    if error:
        item["errors"] = [
            {
                "code": error["code"],
                "title": error.get("title", "error"),
                "message": error.get("message", error.get("title", "error")),
                "error_data": {"details": error.get("details", "")},
            }
        ]
    return _envelope(phone_number_id, {"statuses": [item]})


def payment_body(
    phone_number_id: str,
    wamid: str,
    recipient_id: str,
    reference_id: str,
    status: str = "captured",
    amount: int = 50500,
    at: float | None = None,
) -> dict[str, Any]:
    """Meta's payments webhook (India) for an order_details message: a `statuses[]` item of type
    `payment`, the order's `reference_id` and one transaction."""
    when = int(at or time.time())
    total = {"value": amount, "offset": 100}
    transaction = {
        "id": f"pay_{reference_id}",
        "type": "razorpay",
        "status": "success" if status == "captured" else "pending",
        "created_timestamp": when,
        "updated_timestamp": when,
        "amount": total,
        "currency": "INR",
        "method": {"type": "upi"},
    }
    item = {
        "id": wamid,
        "status": status,
        "type": "payment",
        "timestamp": str(when),
        "recipient_id": recipient_id.lstrip("+"),
        "payment": {
            "reference_id": reference_id,
            "amount": total,
            "currency": "INR",
            "transaction": transaction,
        },
    }
    return _envelope(phone_number_id, {"statuses": [item]})


def inbound_body(
    phone_number_id: str, wamid: str, wa_id: str, text: str, at: float | None = None, name: str = "Customer"
) -> dict[str, Any]:
    """A Meta webhook carrying one text message a customer sent."""
    wa_id = wa_id.lstrip("+")
    message = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(at or time.time())),
        "type": "text",
        "text": {"body": text},
    }
    return _envelope(
        phone_number_id, {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]}
    )


def pricing_of(category: str) -> dict[str, Any]:
    """What Meta's per-message pricing (PMP) says of a message of this category (marketing,
    utility, authentication, service): a service reply inside the window is free."""
    free = category == "service"
    return {
        "billable": not free,
        "pricing_model": "PMP",
        "category": category,
        "type": "free_customer_service" if free else "regular",
    }


def preferences_body(
    phone_number_id: str, wa_id: str, value: str, at: float | None = None, name: str = "Customer"
) -> dict[str, Any]:
    """Meta's `user_preferences` webhook: a customer stopped (`stop`) or resumed (`resume`)
    marketing messages."""
    wa_id = wa_id.lstrip("+")
    action = "stop" if value == "stop" else "resume"
    item = {
        "wa_id": wa_id,
        "detail": f"User requested to {action} marketing messages",
        "category": "marketing_messages",
        "value": value,
        "timestamp": int(at or time.time()),
    }
    value_ = {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "user_preferences": [item]}
    return _envelope(phone_number_id, value_, field="user_preferences")


def signed(body: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw body and its headers, signed as Meta signs: written here from Meta's description
    rather than imported from the receiver, so a mistake there cannot hide (and the sandbox keeps
    to the standard library, as compose runs it)."""
    raw = json.dumps(body).encode()
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def post(url: str, raw: bytes, headers: dict[str, str], timeout: float = 5) -> int:
    """POST once; the HTTP status, or 0 when no answer came."""
    req = urllib.request.Request(url, data=raw, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Poster:
    """Posts signed bodies at their due time, retrying until a 200, in one background thread."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.queue: list[tuple[float, int, str, dict[str, Any], str, int]] = []
        self.seq = itertools.count()
        self.log: list[dict[str, Any]] = []
        threading.Thread(target=self._run, name="webhook-poster", daemon=True).start()

    def schedule(self, url: str, body: dict[str, Any], secret: str, delay: float) -> None:
        with self.lock:
            heapq.heappush(self.queue, (time.time() + delay, next(self.seq), url, body, secret, 1))
            self.lock.notify()

    def clear(self) -> None:
        with self.lock:
            self.log.clear()

    def pending(self) -> int:
        with self.lock:
            return len(self.queue)

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self.queue or self.queue[0][0] > time.time():
                    self.lock.wait(self.queue[0][0] - time.time() if self.queue else None)
                _due, seq, url, body, secret, tries = heapq.heappop(self.queue)
            raw, headers = signed(body, secret)
            status = post(url, raw, headers)
            with self.lock:
                self.log.append({"time": time.time(), "status": status, "tries": tries, "body": body})
                if status != 200 and tries < MAX_TRIES:
                    heapq.heappush(self.queue, (time.time() + RETRY_EVERY, seq, url, body, secret, tries + 1))
