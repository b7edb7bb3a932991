"""Error codes map to what the caller should do, whatever HTTP status carries them."""

import pickle

import pytest

from worker.delivery.errors import (
    AccountError,
    PairRateLimited,
    PermanentError,
    TransientError,
    api_error,
    classify,
)


@pytest.mark.parametrize("code", [1, 2, 4, 80007, 130429, 131000, 131016, 131057])
def test_transient_codes(code: int) -> None:
    assert classify(code, 400) is TransientError
    assert classify(code, 429) is TransientError


@pytest.mark.parametrize(
    "code",
    [100, 131008, 131009, 131021, 131026, 131047, 131050, 131051, 131052, 131053, 132000, 132001, 132016],
)
def test_permanent_codes_even_when_sent_as_5xx_or_429(code: int) -> None:
    assert classify(code, 400) is PermanentError
    assert classify(code, 500) is PermanentError
    assert classify(code, 429) is PermanentError


@pytest.mark.parametrize("code", [0, 3, 10, 190, 200, 250, 299, 368, 131031, 131042, 131048, 131049])
def test_account_codes(code: int) -> None:
    assert classify(code, 400) is AccountError


def test_pair_limit_is_its_own_transient_kind() -> None:
    assert classify(131056, 400) is PairRateLimited
    assert issubclass(PairRateLimited, TransientError)


def test_status_only_when_there_is_no_code() -> None:
    assert classify(None, 500) is TransientError
    assert classify(None, 503) is TransientError
    assert classify(None, 429) is TransientError
    assert classify(None, 401) is AccountError
    assert classify(None, 400) is PermanentError


def test_meta_error_body_is_parsed() -> None:
    body = {
        "error": {
            "message": "(#131047) Re-engagement message",
            "type": "OAuthException",
            "code": 131047,
            "error_data": {"messaging_product": "whatsapp", "details": "More than 24 hours have passed"},
            "error_subcode": 2494010,
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }
    exc = api_error(400, body)
    assert isinstance(exc, PermanentError)
    assert exc.code == 131047
    assert exc.info["details"] == "More than 24 hours have passed"
    assert exc.info["fbtrace_id"] == "Az8or2yhqkZfEZ-_4Qn_Bam"
    assert exc.info["kind"] == "permanent"
    assert str(exc).startswith("(131047) Re-engagement message: ")
    assert "More than 24 hours" in str(exc)


def test_retry_after_and_non_json_bodies() -> None:
    exc = api_error(429, {}, retry_after=7.0)
    assert isinstance(exc, TransientError) and exc.retry_after == 7.0 and exc.code is None
    assert isinstance(api_error(502, "<html>Bad gateway</html>"), TransientError)


def test_exceptions_rebuild_from_their_args() -> None:
    """Celery's result backend rebuilds an exception as cls(*args): data must survive the trip."""
    exc = api_error(400, {"error": {"code": 190, "message": "expired"}})
    again = type(exc)(*exc.args)
    assert again.code == 190 and str(again) == str(exc)
    assert pickle.loads(pickle.dumps(exc)).info == exc.info


def test_the_docs_error_code_table_is_the_code_table() -> None:
    from pathlib import Path

    from worker.delivery.errors import CODES

    page = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    section = page.split("\n## Error codes\n", 1)[1].split("\n#", 1)[0]
    rows = [
        line.strip("|").split("|")
        for line in section.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    documented = {int(code): (title.strip(), handling.strip()) for code, title, handling in rows[1:]}
    assert documented == {code: (e.title, e.handling.value) for code, e in CODES.items()}
