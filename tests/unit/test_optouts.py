"""Opt-outs' pure decisions: what an inbound text means, whether an opt-out holds a message back;
the webhook shapes that record them (`user_preferences`), the pricing counted per category; and
that what keeps them outlives an erasure."""

from __future__ import annotations

import json

import pytest

from worker.campaigns.runs import run_prefix
from worker.delivery.optouts import (
    LEGACY,
    NUMBERS,
    RECORDS,
    Meaning,
    OptOut,
    Reason,
    blocks,
    keywords,
    meaning,
    said,
)
from worker.ops.erasure import KEEP_AS_HASH, Action, Step, find, salted
from worker.settings import Settings
from worker.statuses.events import Billing, Preference, billing, parse, tally_field
from worker.statuses.tracker import RUN_PREFIX

DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
STOP = keywords(DEFAULTS.optout_keywords)
START = keywords(DEFAULTS.optin_keywords)
OPTED = OptOut(Reason.KEYWORD, 1735786800.0, "STOP")
N = "+919876500777"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("STOP", Meaning.STOP),
        ("stop", Meaning.STOP),
        ("  Stop. ", Meaning.STOP),
        ("*STOP*", Meaning.STOP),
        ("Unsubscribe!", Meaning.STOP),
        ("Stop promotions", Meaning.STOP),  # a marketing template's quick-reply button
        ("रोकें", Meaning.STOP),
        ("बंद करें", Meaning.STOP),
        ("बंद  करें।", Meaning.STOP),  # two spaces and a danda
        ("Band Karo", Meaning.STOP),
        ("START", Meaning.START),
        ("shuru karo", Meaning.START),
        ("please don't stop the offers", Meaning.NONE),
        ("stopped", Meaning.NONE),
        ("", Meaning.NONE),
        (None, Meaning.NONE),
    ],
)
def test_an_inbound_text_is_a_keyword_only_when_it_is_the_whole_message(
    text: str | None, found: Meaning
) -> None:
    assert meaning(text, STOP, START) is found


def test_the_keywords_are_a_setting() -> None:
    mine = keywords("HALT, Nahi chahiye")
    assert meaning("nahi chahiye", mine, START) is Meaning.STOP
    assert meaning("STOP", mine, START) is Meaning.NONE


def test_the_words_looked_into_are_a_text_a_buttons_and_an_interactive_replys() -> None:
    assert said({"type": "text", "text": {"body": "STOP"}}) == "STOP"
    assert said({"type": "button", "button": {"payload": "stop-promo", "text": "Stop promotions"}}) == (
        "Stop promotions"
    )
    reply = {"type": "interactive", "interactive": {"button_reply": {"id": "b1", "title": "Unsubscribe"}}}
    assert said(reply) == "Unsubscribe"
    assert said({"type": "image", "image": {"id": "m1", "caption": "STOP"}}) is None
    assert said({"type": "text", "text": "not an object"}) is None


@pytest.mark.parametrize(
    ("category", "campaign", "held"),
    [
        ("MARKETING", False, True),
        ("marketing", False, True),
        ("UTILITY", False, False),
        ("AUTHENTICATION", False, False),
        (None, False, False),  # a text reply, or a template the registry does not know
        ("UTILITY", True, True),  # every campaign message
        (None, True, True),
    ],
)
def test_an_opt_out_holds_back_campaigns_and_marketing_templates_only(
    category: str | None, campaign: bool, held: bool
) -> None:
    reason = blocks(OPTED, category, campaign)
    assert (reason is not None) is held
    assert blocks(None, category, campaign) is None
    if reason:
        assert reason.startswith('opted out of marketing messages (keyword "STOP" at 2025-01-02T03:00:00Z)')


def test_an_opt_out_says_why_and_when() -> None:
    assert OptOut(Reason.LEGACY, None).describe() == "legacy"
    assert OptOut.from_json(json.dumps(OPTED.as_dict())) == OPTED


def meta(field: str, value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": field, "value": value}]}],
    }


def test_user_preferences_is_read_as_meta_documents_it() -> None:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"wa_id": "16505551234"}],
        "user_preferences": [
            {
                "wa_id": "16505551234",
                "detail": "User requested to stop marketing messages",
                "category": "marketing_messages",
                "value": "stop",
                "timestamp": 1731705721,
            },
            {"wa_id": "16505551235", "value": "resume", "timestamp": "1731705722"},
            {"wa_id": "16505551236", "value": "maybe"},  # not a value Meta documents: dropped
        ],
    }
    parsed = parse(meta("user_preferences", value), now=1.0)
    assert parsed.events == 2
    stop, resume = parsed.preferences
    assert (stop.wa_id, stop.value, stop.timestamp, stop.phone_number_id) == (
        "16505551234",
        Preference.STOP,
        1731705721.0,
        "106540352242922",
    )
    assert stop.detail == "User requested to stop marketing messages"
    assert (resume.value, resume.category) == (Preference.RESUME, "marketing_messages")


def test_a_statuss_pricing_is_kept() -> None:
    status = {
        "id": "wamid.1",
        "status": "delivered",
        "timestamp": "1731705721",
        "recipient_id": "16505551234",
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"},
    }
    (event,) = parse(meta("messages", {"statuses": [status]}), now=1.0).statuses
    assert event.pricing == {
        "billable": True,
        "pricing_model": "PMP",
        "category": "marketing",
        "type": "regular",
    }
    odd = {**status, "pricing": {"billable": "yes", "category": 7}}
    (event,) = parse(meta("messages", {"statuses": [odd]}), now=1.0).statuses
    assert event.pricing == {"billable": None, "pricing_model": None, "category": None, "type": None}
    (event,) = parse(meta("messages", {"statuses": [{**status, "pricing": None}]}), now=1.0).statuses
    assert event.pricing is None


@pytest.mark.parametrize(
    ("pricing", "charged", "category", "field"),
    [
        ({"billable": True, "category": "marketing"}, True, Billing.MARKETING, "billable:marketing"),
        ({"billable": True, "category": "marketing_lite"}, True, Billing.MARKETING, "billable:marketing"),
        ({"billable": True, "category": "utility"}, True, Billing.UTILITY, "billable:utility"),
        (
            {"billable": True, "category": "authentication_international"},
            True,
            Billing.AUTHENTICATION,
            "billable:authentication",
        ),
        ({"billable": False, "category": "service"}, False, Billing.SERVICE, "free:service"),
        ({"type": "regular", "category": "utility"}, True, Billing.UTILITY, "billable:utility"),
        ({"type": "free_customer_service", "category": "utility"}, False, Billing.UTILITY, "free:utility"),
        ({"billable": False, "category": "referral_conversion"}, False, Billing.OTHER, "free:other"),
    ],
)
def test_pricing_is_counted_by_its_category_as_billed(
    pricing: dict, charged: bool, category: Billing, field: str
) -> None:
    assert billing(pricing) == (charged, category)
    assert tally_field(pricing) == field


def test_the_statuses_count_pricing_in_the_runs_own_counters() -> None:
    assert run_prefix("sale", "r1") + ":counts" == f"{RUN_PREFIX}sale:r1:counts"


def test_an_opt_out_outlives_an_erasure_as_its_salted_hash() -> None:
    token = salted(N, "salt")
    assert NUMBERS.startswith(KEEP_AS_HASH) and LEGACY in KEEP_AS_HASH
    assert find(NUMBERS, "zset", [(N, 1735786800.0)], N, token) == [
        Step(NUMBERS, Action.REPLACE_MEMBER, N, token)
    ]
    # The record is keyed by the hash and holds no number: nothing in it for an erasure to take.
    record = {token: json.dumps(OPTED.as_dict())}
    assert find(RECORDS, "hash", record, N, token) == []
