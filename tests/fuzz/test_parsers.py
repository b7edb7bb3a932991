"""Properties of the pure parts, in this process: the body's JSON, the webhook parser and the
intents' validation never fail otherwise than as they say, and nothing non-finite gets through."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from hypothesis import given

from tests.fuzz.conftest import count, examples
from tests.fuzz.strategies import INTENTS, JSON, has_non_finite, raw_bodies, webhook_docs
from worker.delivery.errors import InvalidIntent
from worker.statuses.events import ERROR_TEXT_MAX, parse
from worker.tasks import send_message
from worker.web.auth import ApiKey
from worker.web.body import parse_json
from worker.web.enqueue import Outcome, prepare

SHOP = ApiKey("shop", "0" * 64, frozenset({"default"}))


def finite(value: Any) -> bool:
    """No NaN or infinity anywhere in `value` (strict JSON can hold it)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


@examples(300)
@given(raw_bodies(JSON | INTENTS | webhook_docs()))
def test_a_body_is_json_with_finite_numbers_or_a_value_error(raw: bytes) -> None:
    count("parse_json")
    try:
        value = parse_json(raw)
    except ValueError:
        return
    assert not has_non_finite(raw) and finite(value)


@examples(300)
@given(webhook_docs())
def test_the_webhook_parser_never_fails_and_keeps_only_finite_bounded_events(doc: Any) -> None:
    count("webhook_parse")
    now = time.time()
    parsed = parse(doc, now)
    for event in [*parsed.statuses, *parsed.messages]:
        assert math.isfinite(event.timestamp) and finite(event.as_dict())
    for status in parsed.statuses:
        for value in (status.error or {}).values():
            assert not isinstance(value, str) or len(value) <= ERROR_TEXT_MAX


@examples(300)
@given(INTENTS, JSON)
def test_an_intent_is_prepared_and_validated_or_refused_as_invalid(raw: Any, header: Any) -> None:
    count("intent_models")
    item = prepare(raw, header if isinstance(header, str) else None, SHOP)
    if item.outcome is not None:
        assert item.outcome in (Outcome.INVALID, Outcome.FORBIDDEN) and item.message
        assert all(set(e) == {"field", "reason"} for e in item.errors)
        return
    try:
        send_message.check(item.kwargs)
    except InvalidIntent as exc:
        assert exc.errors and all(e["field"] for e in exc.errors)
