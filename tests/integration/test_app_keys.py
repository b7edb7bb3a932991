"""An app chooses its idempotency keys freely: none of them is read as campaign context."""

from __future__ import annotations

import pytest

import producers
from tests import spec_examples as spec

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("key", ["campaign:promo", "campaign:promo:2026:+919999595313", "campaign:"])
def test_a_key_that_looks_like_a_campaigns_is_sent_once_and_kept(stack, api, key) -> None:
    from worker.delivery.idempotency import PREFIX

    outcome = producers.send_text(spec.TO, "order shipped", idempotency_key=key).get(timeout=30)
    [accepted] = api.accepted()
    assert outcome["wamid"] == accepted["wamid"] and outcome["idempotency_key"] == key
    record = stack.redis.client().hgetall(PREFIX + key)
    assert record["state"] == "sent" and record["wamid"] == accepted["wamid"]

    again = producers.send_text(spec.TO, "order shipped", idempotency_key=key).get(timeout=30)
    assert again["duplicate"] is True and again["wamid"] == accepted["wamid"]
    assert len(api.requests()) == 1
    assert stack.redis.client().keys("wa:run:promo*") == []  # no campaign run counts an app's message
