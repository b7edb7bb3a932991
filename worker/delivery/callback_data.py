"""The tracker: every message's `biz_opaque_callback_data` names its intent (pure).

Meta echoes the field in every status webhook of the message, so a status for a wamid that was
never recorded (the worker died after the API accepted the request, before it kept the answer)
still names its idempotency key. The value is `wd1:<length of the key>:<key>` followed by the
app's own value as it gave it; the length says where the key ends, so neither needs escaping.
An app's value that leaves no room for the tracker (Meta allows 512 characters in all) goes as
it was given and the message is not tracked.
"""

from __future__ import annotations

import re

PREFIX = "wd1:"
MAX_LENGTH = 512  # Meta's limit for the whole field
_HEAD = re.compile(r"wd1:(\d{1,3}):")


def with_tracker(key: str, own: str | None) -> str | None:
    """The field as sent: the tracker naming `key`, then the app's own value; only the app's value
    (or None) when both do not fit."""
    value = f"{PREFIX}{len(key)}:{key}{own or ''}"
    return value if len(value) <= MAX_LENGTH else own


def read_tracker(value: str | None) -> tuple[str | None, str | None]:
    """(the idempotency key it names, the app's own value as it gave it) of an echoed field; a
    value that is no tracker of ours is all the app's."""
    if not value:
        return None, value
    head = _HEAD.match(value)
    if head is None:
        return None, value
    length, start = int(head.group(1)), head.end()
    key = value[start : start + length]
    if not key or len(key) != length:
        return None, value
    return key, value[start + length :] or None
