"""The template registry against the sandbox over HTTP and a real Redis: a sync across pages and
through the rate limit, a delivery refused before sending, and a 132000 marking the copy stale."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import redis

from devtools.sandbox import EXAMPLE_TEMPLATES
from tests import spec_examples as spec
from tests.inprocess.conftest import ThreadSandbox
from worker.delivery.errors import InvalidIntent, PermanentError
from worker.delivery.send import MessageDelivery, SendServices
from worker.delivery.templates import PAGE_SIZE, sync_registry

WRONG_COUNT = {
    "to": spec.TO,
    "type": "template",
    "template": {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "A"}] * 2}],
    },
}


def many(n: int) -> list[dict[str, Any]]:
    body = {"type": "BODY", "text": "Hi {{1}}"}
    return [
        {"name": f"bulk_{i:03d}", "language": "en_US", "status": "APPROVED", "components": [body]}
        for i in range(n)
    ]


def listings(sandbox: ThreadSandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.state.requests if r.get("route") == "message_templates"]


def test_a_sync_reads_every_page(send: SendServices, sandbox: ThreadSandbox) -> None:
    sandbox.state.templates += many(2 * PAGE_SIZE + 5)
    done = sync_registry(send.sender(None).client, send.sender(None).templates, backoff=0.01)
    assert done["pages"] == 3 and done["templates"] == 2 * PAGE_SIZE + 5 + len(EXAMPLE_TEMPLATES)
    assert [bool(r["query"].get("after")) for r in listings(sandbox)] == [False, True, True]
    assert (
        len(send.sender(None).templates.all()) == 2 * PAGE_SIZE + 5 + len(EXAMPLE_TEMPLATES)
        and send.sender(None).templates.synced()
    )
    assert send.sender(None).templates.get("order_update", "en_US").status == "APPROVED"  # type: ignore[union-attr]


def test_a_throttled_sync_backs_off_and_finishes(send: SendServices, sandbox: ThreadSandbox) -> None:
    sandbox.faults(
        {"type": "message_templates", "status": 429, "code": 80007, "retry_after": 0.2, "times": 2}
    )
    done = sync_registry(send.sender(None).client, send.sender(None).templates, backoff=0.01)
    assert done["templates"] == len(EXAMPLE_TEMPLATES) and len(listings(sandbox)) == 3
    gaps = [b["time"] - a["time"] for a, b in zip(listings(sandbox), listings(sandbox)[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps)  # Retry-After honoured


def test_with_no_registry_synced_nothing_is_checked(send: SendServices, sandbox: ThreadSandbox) -> None:
    with pytest.raises(PermanentError) as caught:  # the API is the one to refuse it, as before
        MessageDelivery(send, dict(WRONG_COUNT), "tpl-1", requeues=0).run()
    assert caught.value.code == 132000 and len(sandbox.state.requests) == 1


def test_a_synced_registry_refuses_before_sending(send: SendServices, sandbox: ThreadSandbox) -> None:
    sync_registry(send.sender(None).client, send.sender(None).templates, backoff=0.01)
    sandbox.state.requests.clear()
    with pytest.raises(InvalidIntent) as caught:
        MessageDelivery(send, dict(WRONG_COUNT), "tpl-2", requeues=0).run()
    assert caught.value.errors == [
        {"field": "template.components.0", "reason": "body: expected 1 parameter ({{1}}), given 2"}
    ]
    assert sandbox.state.requests == [] and [e["kind"] for e in send.dead.list()] == ["invalid"]


def test_a_132000_marks_the_copy_stale_and_asks_for_a_resync(
    send: SendServices, sandbox: ThreadSandbox, r: redis.Redis
) -> None:
    sync_registry(send.sender(None).client, send.sender(None).templates, backoff=0.01)
    asked: list[tuple[str, str]] = []
    resyncing = replace(send, resync_template=lambda sender, name: asked.append((sender, name)))
    # The template was edited on Meta's side after our sync: it now takes two parameters.
    two = {"type": "BODY", "text": "Hi {{1}}, order {{2}} has shipped."}
    edited = {"name": "order_update", "language": "en_US", "status": "APPROVED", "components": [two]}
    sandbox.state.templates = [t for t in sandbox.state.templates if t["name"] != "order_update"] + [edited]
    right_for_meta = {**WRONG_COUNT, "idempotency_key": "tpl-3"}
    with pytest.raises(InvalidIntent):  # our copy says one parameter
        MessageDelivery(resyncing, dict(right_for_meta), "tpl-3", requeues=0).run()
    one = {**WRONG_COUNT, "template": spec.OTHERS["template"]}
    with pytest.raises(PermanentError) as caught:  # our copy says fine, Meta says 132000
        MessageDelivery(resyncing, dict(one), "tpl-4", requeues=0).run()
    assert caught.value.code == 132000 and asked == [("default", "order_update")]
    assert send.sender(None).templates.stale() == {"order_update:en_US"}
    MessageDelivery(resyncing, {**right_for_meta, "idempotency_key": "tpl-5"}, "tpl-5", 0).run()  # unchecked
    sync_registry(send.sender(None).client, send.sender(None).templates, backoff=0.01, name="order_update")
    assert send.sender(None).templates.stale() == set()
    with pytest.raises(InvalidIntent):  # the re-synced copy has two
        MessageDelivery(resyncing, dict(one, idempotency_key="tpl-7"), "tpl-7", requeues=0).run()
