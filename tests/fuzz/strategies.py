"""What the fuzz tests generate: JSON values, valid intents and webhook bodies with holes, and
raw bodies with the numbers JSON has no room for spliced in."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from hypothesis import strategies as st

from devtools.webhooks import inbound_body, status_body
from tests.harness import PHONE_NUMBER_ID
from worker.web.openapi import MAX_BATCH

TO = "+919876503000"
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "+91", TO, "text", "template", "default", "support", "x" * 5000])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
NUMBER = re.compile(r"(?<=[:\[,] )-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?=[,\]}])")
# JSON numbers Python reads as NaN or infinite, and near misses that are fine.
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999"]
FINITE = ["1e308", "-0.0", "12345678901234567890"]

VALID = [
    {"to": TO, "type": "text", "text": {"body": "Your order has shipped"}},
    {"to": TO, "type": "text", "text": {"preview_url": True, "body": "https://example.com"}},
    {"to": TO, "type": "image", "image": {"id": "MEDIA-OBJECT-ID", "caption": "c"}},
    {"to": TO, "type": "location", "location": {"latitude": 12.9, "longitude": 77.6, "name": "n"}},
    {"to": TO, "type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}},
    {
        "to": TO,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick one"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]},
        },
    },
]


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with a few of its places set to any JSON value, or removed, or given a new key."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(0, 3))):
        holder, place = doc, None
        while isinstance(holder, dict | list) and holder:
            place = draw(st.sampled_from(list(holder) if isinstance(holder, dict) else range(len(holder))))
            child = holder[place]
            if not (isinstance(child, dict | list) and child and draw(st.booleans())):
                break
            holder, place = child, None
        if place is None:
            if isinstance(doc, dict):
                doc[draw(st.sampled_from(["extra", "sender", "idempotency_key", "campaign", "context"]))] = (
                    draw(JSON)
                )
            continue
        if isinstance(holder, dict) and draw(st.booleans()):
            holder.pop(place, None)
        else:
            holder[place] = draw(JSON)
    return doc


INTENTS = st.one_of(st.sampled_from(VALID), st.sampled_from(VALID).flatmap(mutated), JSON)


@st.composite
def raw_bodies(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> bytes:
    """A JSON text of one of `values`, sometimes with a number JSON has no room for spliced in
    (in place of a number or a string of it), sometimes not JSON at all."""
    kind = draw(st.sampled_from(["json", "json", "spliced", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    text = json.dumps(draw(values), ensure_ascii=draw(st.booleans()))
    if kind == "spliced":
        token = draw(st.sampled_from(NON_FINITE + FINITE))
        spliced, n = NUMBER.subn(token, text, count=1)
        text = spliced if n else f'{{"n": {token}, "v": {text}}}'
    return text.encode("utf-8", "surrogatepass")


def has_non_finite(raw: bytes) -> bool:
    """True when Python's own parser reads a NaN or an infinity in `raw` (and it is JSON)."""
    try:
        found: list[float] = []

        def note(value: str) -> float:
            number = float(value)
            found.append(number)
            return number

        json.loads(raw, parse_float=note, parse_constant=note)
    except (ValueError, RecursionError):
        return False
    return any(n != n or n in (float("inf"), float("-inf")) for n in found)


@st.composite
def webhook_docs(draw: st.DrawFn) -> Any:
    """Meta's and Interakt's shapes with holes: the places the parser reads set to anything."""
    wamid = f"wamid.FUZZ{draw(st.integers(0, 10**6))}"
    error = {"code": 131026, "title": "t", "message": "m", "details": "d"}
    status = draw(st.sampled_from(["sent", "delivered", "read", "failed", "nope"]))
    bases = [
        status_body(PHONE_NUMBER_ID, wamid, status, TO, at=time.time(), error=error),
        inbound_body(PHONE_NUMBER_ID, wamid, TO, "hello", at=time.time()),
        {
            "type": f"message_api_{status}",
            "timestamp": "2024-01-01T00:00:00Z",
            "data": {
                "customer": {"channel_phone_number": TO[1:]},
                "message": {
                    "id": wamid,
                    "channel_failure_reason": "r",
                    "received_at_utc": "2024-01-01T00:00:00Z",
                },
            },
        },
    ]
    return draw(st.one_of(st.sampled_from(bases).flatmap(mutated), JSON))


BATCHES = st.lists(INTENTS, min_size=1, max_size=5).map(lambda items: {"messages": items}) | JSON
assert MAX_BATCH >= 5
