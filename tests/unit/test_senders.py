"""Senders files: what is accepted, and how a broken one is named (file, sender, field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.delivery.senders import DEFAULT, SendersError, load_senders, sender_names, senders
from worker.settings import Settings

GOOD = """
[senders.support]
phone_number_id = "1111111111"
waba_id = "waba-s"
token_env = "SUPPORT_TOKEN"
rate_limit = 1000

[senders.marketing]
phone_number_id = "2222222222"
waba_id = "waba-m"
token_file = "{secret}"
api_url = "http://127.0.0.1:9/api/v17.0"
pair_interval = 3
pair_burst = 10
"""


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "marketing.token").write_text("tok-marketing\n")
    monkeypatch.setenv("SUPPORT_TOKEN", "tok-support")
    path = tmp_path / "senders.toml"
    path.write_text(GOOD.format(secret=tmp_path / "marketing.token"))
    return path


def test_each_sender_has_its_number_account_token_and_limits(good: Path) -> None:
    base = Settings(INTERAKT_PHONE_NUMBER_ID="9999999999", INTERAKT_WABA_ID="waba-d", DISPATCH_SENDERS=good)
    found = senders(base)
    assert sorted(found) == ["default", "marketing", "support"]
    support, marketing = found["support"], found["marketing"]
    assert (support.phone_number_id, support.waba_id, support.rate_limit) == ("1111111111", "waba-s", 1000)
    assert support.access_token is not None and support.access_token.get_secret_value() == "tok-support"
    assert marketing.access_token is not None and marketing.access_token.get_secret_value() == "tok-marketing"
    assert marketing.messages_url == "http://127.0.0.1:9/api/v17.0/2222222222/messages"
    assert (marketing.pair_interval, marketing.pair_burst, marketing.rate_limit) == (3, 10, 80)
    assert found[DEFAULT].phone_number_id == "9999999999"  # INTERAKT_* still define `default`
    assert sender_names(base) == ["default", "marketing", "support"]


def test_without_a_file_there_is_only_the_default() -> None:
    assert sorted(senders(Settings(INTERAKT_PHONE_NUMBER_ID="9999999999"))) == [DEFAULT]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'phone_number_id = "1"\nwaba_id = "w"\ntoken = "abc"',
            "sender 'x': token: a token is never written in this file",
        ),
        ('phone_number_id = "1"\nwaba_id = "w"', "sender 'x': sender: give exactly one of token_env"),
        ('waba_id = "w"\ntoken_env = "SUPPORT_TOKEN"', "sender 'x': phone_number_id: Field required"),
        (
            'phone_number_id = "1"\nwaba_id = "w"\ntoken_env = "NOT_SET_ANYWHERE"',
            "NOT_SET_ANYWHERE is not set",
        ),
        (
            'phone_number_id = "1"\nwaba_id = "w"\ntoken_env = "SUPPORT_TOKEN"\nrate_limit = 5000',
            "rate_limit:",
        ),
        (
            'phone_number_id = "1"\nwaba_id = "w"\ntoken_env = "SUPPORT_TOKEN"\ncolour = 1',
            "colour: Extra inputs",
        ),
    ],
)
def test_a_broken_sender_is_named_with_its_file_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str, message: str
) -> None:
    monkeypatch.setenv("SUPPORT_TOKEN", "tok")
    path = tmp_path / "senders.toml"
    path.write_text(f"[senders.x]\n{table}\n")
    with pytest.raises(SendersError) as caught:
        load_senders(path, Settings())
    assert str(caught.value).startswith(f"{path}: ")
    assert message.replace("Value error, ", "") in str(caught.value)


def test_a_file_that_is_not_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "senders.toml"
    path.write_text("[senders.x\n")
    with pytest.raises(SendersError, match=r"line 1"):
        load_senders(path, Settings())
