"""What erasure decides for each kind of key (pure): the number goes from everything, a record
that must remain keeps a salted hash in its place, and what is someone else's is left alone;
and how long anything holding a number is kept (the retention settings)."""

from __future__ import annotations

import base64
import json

import pytest

from worker.ops.erasure import Action, Step, decoded, find, salted
from worker.settings import Settings, SettingsError, get_settings

N = "+919876500777"
TOKEN = salted(N, "salt")


def kombu_message(kwargs: dict) -> str:
    body = base64.b64encode(json.dumps([[], kwargs, {}]).encode()).decode()
    return json.dumps({"body": body, "properties": {"body_encoding": "base64"}, "headers": {"id": "t1"}})


def test_the_hash_is_the_deployments_own_and_names_the_number_in_either_form() -> None:
    assert salted(N, "salt") == salted(N.lstrip("+"), "salt") != salted(N, "other")
    assert N.lstrip("+") not in TOKEN


def test_a_queued_messages_base64_body_is_looked_into() -> None:
    assert N in decoded(kombu_message({"to": N}))
    assert N in decoded(json.dumps([json.loads(kombu_message({"to": N})), "", "whatsapp"]))  # unacked


def test_keys_named_by_the_number_and_strings_holding_it_go() -> None:
    assert find(f"wa:window:111:{N.lstrip('+')}", "string", "1", N, TOKEN) == [
        Step(f"wa:window:111:{N.lstrip('+')}", Action.DELETE_KEY)
    ]
    result = json.dumps({"status": "SUCCESS", "result": {"to": N, "wa_id": N.lstrip("+")}})
    assert find("celery-task-meta-t1", "string", result, N, TOKEN) == [
        Step("celery-task-meta-t1", Action.DELETE_KEY)
    ]
    assert find("celery-task-meta-t2", "string", result.replace("777", "778"), N, TOKEN) == []


def test_an_idempotency_record_stays_with_the_number_replaced() -> None:
    record = {"state": "sent", "to": N, "wamid": "wamid.X", "error": ""}
    assert find("wa:idem:order-1", "hash", record, N, TOKEN) == [
        Step("wa:idem:order-1", Action.REPLACE_FIELD, "to", TOKEN)
    ]


def test_other_hashes_lose_the_fields_that_hold_the_number() -> None:
    dead = {"k1": json.dumps({"intent": {"to": N}}), "k2": json.dumps({"intent": {"to": "+919876500778"}})}
    assert find("wa:dead", "hash", dead, N, TOKEN) == [Step("wa:dead", Action.DELETE_FIELD, "k1")]
    report = {N: json.dumps({"status": "sent"})}
    assert find("wa:run:spring:r1:report", "hash", report, N, TOKEN) == [
        Step("wa:run:spring:r1:report", Action.DELETE_FIELD, N)
    ]


def test_opt_outs_and_the_messaging_limit_keep_a_hash_lists_and_streams_lose_it() -> None:
    assert find("wa:optout", "set", {N, "+919876500778"}, N, TOKEN) == [
        Step("wa:optout", Action.REPLACE_MEMBER, N, TOKEN)
    ]
    assert find("wa:reach:waba", "zset", [(N, 1.0)], N, TOKEN) == [
        Step("wa:reach:waba", Action.REPLACE_MEMBER, N, TOKEN)
    ]
    queued = kombu_message({"to": N})
    assert find("whatsapp", "list", [queued, kombu_message({"to": "+919876500778"})], N, TOKEN) == [
        Step("whatsapp", Action.DELETE_FIELD, queued)
    ]
    entries = [("1-0", {"body": json.dumps({"from": N.lstrip("+")})}), ("2-0", {"body": "{}"})]
    assert find("wa:webhooks", "stream", entries, N, TOKEN) == [
        Step("wa:webhooks", Action.DELETE_FIELD, "1-0")
    ]


def test_a_campaign_definition_loses_only_that_numbers_rows() -> None:
    other = "+919876500778"
    campaign = {
        "name": "spring",
        "audience": {"numbers": [N, other]},
        "rows": [{"phone": N}, {"phone": other}],
    }
    [step] = find("wa:campaign:def:spring", "string", json.dumps(campaign), N, TOKEN)
    assert step.action is Action.REWRITE
    assert json.loads(step.value) == {
        "name": "spring",
        "audience": {"numbers": [other]},
        "rows": [{"phone": other}],
    }


def test_the_keys_kept_as_a_hash_are_the_ones_their_readers_read() -> None:
    from worker.campaigns.runs import OPTOUT
    from worker.delivery.reach import reach_key
    from worker.ops.erasure import KEEP_AS_HASH

    assert OPTOUT in KEEP_AS_HASH and reach_key("w").startswith(KEEP_AS_HASH)


def test_retention_is_the_default_and_the_cap_of_every_ttl_that_holds_a_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    day = 86400
    default = Settings()
    assert (default.idempotency_ttl, default.dead_letter_ttl, default.result_expires) == (
        30 * day,
        30 * day,
        7 * day,
    )
    short = Settings(DISPATCH_RETENTION_DAYS=3)
    assert (short.idempotency_ttl, short.dead_letter_ttl, short.result_expires) == (3 * day, 3 * day, 3 * day)
    assert short.api_idempotency_ttl == day
    assert Settings(DISPATCH_RETENTION_DAYS=3, DISPATCH_IDEMPOTENCY_TTL=day).idempotency_ttl == day
    # Set longer than the retention: refused at start, naming the variable and never a value.
    monkeypatch.setenv("INTERAKT_ACCESS_TOKEN", "a-token-no-error-shows")
    monkeypatch.setenv("DISPATCH_RETENTION_DAYS", "3")
    monkeypatch.setenv("DISPATCH_DEAD_LETTER_TTL", str(10 * day))
    get_settings.cache_clear()  # built once per process; this test's variables are its own
    with pytest.raises(SettingsError) as refused:
        get_settings()
    get_settings.cache_clear()
    assert str(refused.value) == (
        "settings: DISPATCH_DEAD_LETTER_TTL (10 days) is longer than DISPATCH_RETENTION_DAYS (3): "
        "nothing holding a number may be kept longer"
    )
