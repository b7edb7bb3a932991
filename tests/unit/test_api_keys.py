"""API keys: the entry format, lookup by hash, sender limits, the rate window's answer (pure)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from worker.settings import Settings
from worker.web.auth import (
    KEY_PREFIX,
    ApiKey,
    ApiKeysError,
    bearer,
    find_key,
    hash_key,
    key_entry,
    load_keys,
    new_key,
    over_limit,
    parse_entry,
    parse_keys,
)

DIGEST = hashlib.sha256(b"wad_shop").hexdigest()


def test_an_entry_names_a_hash_and_optionally_senders() -> None:
    assert parse_entry(f"shop:{DIGEST}") == ApiKey("shop", DIGEST)
    assert parse_entry(f" shop:{DIGEST.upper()}:support|marketing ") == ApiKey(
        "shop", DIGEST, frozenset({"support", "marketing"})
    )


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("shop", "expected name:sha256hex"),
        (f"shop:{DIGEST}:a:b", "expected name:sha256hex"),
        ("shop:wad_the-key-itself", "not the key itself"),
        (f"bad name:{DIGEST}", "a name of letters"),
        (f"shop:{DIGEST}:Support", "not a sender name: 'Support'"),
    ],
)
def test_a_bad_entry_is_refused_without_echoing_a_key(entry: str, says: str) -> None:
    with pytest.raises(ApiKeysError, match=says) as caught:
        parse_entry(entry)
    assert "wad_the-key-itself" not in str(caught.value)


def test_the_variable_is_comma_separated_and_a_file_has_lines_and_comments(tmp_path: Path) -> None:
    assert [k.name for k in parse_keys(f"a:{DIGEST}, b:{DIGEST}:support,")] == ["a", "b"]
    with pytest.raises(ApiKeysError, match="unique: a"):
        parse_keys(f"a:{DIGEST},a:{DIGEST}")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# the shop\nshop:{DIGEST}  # rotated 2026-11\n\ncrm:{DIGEST}:support\n")
    settings = Settings(DISPATCH_API_KEYS=f"cli:{DIGEST}", DISPATCH_API_KEYS_FILE=keys_file)
    assert [k.name for k in load_keys(settings)] == ["shop", "crm", "cli"]
    with pytest.raises(ApiKeysError, match="in both"):
        load_keys(Settings(DISPATCH_API_KEYS=f"shop:{DIGEST}", DISPATCH_API_KEYS_FILE=keys_file))
    with pytest.raises(ApiKeysError, match="No such file"):
        load_keys(Settings(DISPATCH_API_KEYS_FILE=tmp_path / "missing"))
    assert load_keys(Settings()) == []


def test_only_the_keys_named_in_dispatch_erasure_keys_may_erase() -> None:
    keys = load_keys(Settings(DISPATCH_API_KEYS=f"shop:{DIGEST},privacy:{DIGEST}"))
    assert [k.may_erase for k in keys] == [False, False]  # no key may, unless named
    named = Settings(DISPATCH_API_KEYS=f"shop:{DIGEST},privacy:{DIGEST}", DISPATCH_ERASURE_KEYS=" privacy,")
    assert {k.name: k.may_erase for k in load_keys(named)} == {"shop": False, "privacy": True}
    with pytest.raises(ApiKeysError, match="names no API key: 'dpo'"):
        load_keys(Settings(DISPATCH_API_KEYS=f"shop:{DIGEST}", DISPATCH_ERASURE_KEYS="dpo"))


def test_a_new_key_and_its_entry_find_each_other() -> None:
    key = new_key()
    assert key.startswith(KEY_PREFIX) and len(key) > 40 and key != new_key()
    entry = key_entry("shop", key, ["support"])
    assert key not in entry and entry == f"shop:{hash_key(key)}:support"
    keys = [parse_entry(f"other:{DIGEST}"), parse_entry(entry)]
    found = find_key(keys, key)
    assert found is not None and found.name == "shop"
    assert find_key(keys, key + "x") is None and find_key(keys, hash_key(key)) is None


def test_a_key_limited_to_senders_allows_only_those() -> None:
    anyone, support = ApiKey("a", DIGEST), ApiKey("s", DIGEST, frozenset({"support"}))
    assert anyone.allows(None) and anyone.allows("marketing")
    assert support.allows("support") and not support.allows("marketing")
    assert not support.allows(None)  # an intent without a sender goes to `default`
    assert ApiKey("d", DIGEST, frozenset({"default"})).allows(None)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer wad_x", "wad_x"),
        ("bearer  wad_x ", "wad_x"),
        ("Basic wad_x", None),
        ("Bearer", None),
        (None, None),
    ],
)
def test_the_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_the_rate_window_answers_retry_after_past_the_limit() -> None:
    assert over_limit(1000, 1000) is None
    assert over_limit(1001, 1000) == 1


def test_the_cli_makes_a_key_and_the_entry_that_finds_it() -> None:
    from tests.cli import run

    made = run("api-key", "new", "shopify-app", "--sender", "support", "--sender", "default")
    assert made["entry"] == key_entry("shopify-app", made["key"], ["support", "default"])
    found = find_key(parse_keys(made["entry"]), made["key"])
    assert found is not None and found.allows("support") and not found.allows("marketing")
    assert "not a sender name" in run("api-key", "new", "shop", "--sender", "Bad!", code=2)["error"]
