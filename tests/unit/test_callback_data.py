"""The tracker in biz_opaque_callback_data: the key it names and the app's own value, both as given."""

from __future__ import annotations

import pytest

from worker.delivery.callback_data import MAX_LENGTH, read_tracker, with_tracker


@pytest.mark.parametrize(
    ("key", "own"),
    [
        ("order-42", None),
        ("order-42", "campaign-7/row-12"),
        ("campaign:sale:r1:+919876500001", "wd1:3:abc"),  # an app value that looks like a tracker
        ("a|b:c", "x" * 400),
        ("k" * 200, None),
        ("5f0c1e8e-8d9b-4f3a-9a53-0b1c2d3e4f50", ""),
    ],
)
def test_the_key_and_the_apps_value_come_back_as_given(key: str, own: str | None) -> None:
    value = with_tracker(key, own)
    assert value is not None and value.startswith("wd1:") and len(value) <= MAX_LENGTH
    assert read_tracker(value) == (key, own or None)


def test_an_apps_value_that_leaves_no_room_goes_as_given_untracked() -> None:
    own = "x" * 500
    assert with_tracker("order-42", own) == own
    assert read_tracker(own) == (None, own)
    assert with_tracker("order-42", "x" * (MAX_LENGTH - len("wd1:8:order-42"))) is not None


@pytest.mark.parametrize("value", [None, "", "order=42", "wd1:", "wd1:x:k", "wd1:9:short", "wd1:0:"])
def test_a_value_that_is_no_tracker_is_all_the_apps(value: str | None) -> None:
    assert read_tracker(value) == (None, value)
