"""The 24-hour customer-service window: the last time each customer wrote to each of our numbers.

Meta lets a business send free-form (non-template) messages only within 24 hours of the
customer's last message; outside it the API answers 131047. The inbound webhooks record that
time here (one key per phone number id and wa_id, expiring with the window), and with
DISPATCH_WINDOW_CHECK the send path refuses such a message itself, before any HTTP call.
"""

from __future__ import annotations

import redis

from worker.scripts import load

WINDOW_SECONDS = 24 * 3600
PREFIX = "wa:window:"


def window_key(phone_number_id: str, wa_id: str) -> str:
    return f"{PREFIX}{phone_number_id}:{wa_id.lstrip('+')}"


def window_open(last_inbound: float | None, now: float) -> bool:
    """Free-form messages are allowed within 24 h of the customer's last message (pure)."""
    return last_inbound is not None and now - last_inbound < WINDOW_SECONDS


class CustomerWindows:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._touch = load("touch_window").on(client)

    def touch(self, phone_number_id: str, wa_id: str, at: float) -> None:
        """The customer wrote at `at`."""
        self._touch([window_key(phone_number_id, wa_id)], [at, WINDOW_SECONDS])

    def last_inbound(self, phone_number_id: str, wa_id: str) -> float | None:
        value = self.redis.get(window_key(phone_number_id, wa_id))
        return float(value) if value else None
