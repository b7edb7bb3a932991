"""Logs never carry the token, and phone numbers in them are masked."""

import io
import json
import logging

import pytest
import structlog

from worker.ops import logs
from worker.settings import get_settings


def test_mask_phone_keeps_prefix_and_last_four() -> None:
    assert logs.mask_phone("+919999595313") == "+91******5313"
    assert logs.mask_text("sent to +919999595313 ok") == "sent to +91******5313 ok"


def test_records_are_json_with_secrets_and_numbers_masked(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("INTERAKT_ACCESS_TOKEN", "tok-XYZ-123")
    get_settings.cache_clear()
    try:
        logs.configure("INFO")
        structlog.contextvars.bind_contextvars(task_id="abc-123", to="+919999595313")
        logs.get_logger("t").info("attempt", attempt=1, access_token="tok-XYZ-123", note="bearer tok-XYZ-123")
        logging.getLogger("celery.app.trace").error("Task failed: {'to': '+919999595313'}")
    finally:
        structlog.contextvars.clear_contextvars()
        get_settings.cache_clear()
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[0]["event"] == "attempt" and lines[0]["task_id"] == "abc-123" and lines[0]["attempt"] == 1
    assert lines[0]["to"] == "+91******5313"
    assert lines[0]["access_token"] == "[redacted]"
    assert "tok-XYZ-123" not in err
    assert "9999595313" not in err


def test_a_line_is_rendered_before_the_stream_lock_is_taken() -> None:
    """The lock covers only the write: 64 pool threads and Celery's consumer do not queue behind
    each other's rendering."""
    stream = io.StringIO()
    handler = logs.JsonLinesHandler(stream)
    held_while_formatting: list[bool] = []

    class Probe(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            held_while_formatting.append(handler.lock._is_owned())  # type: ignore[union-attr]
            return record.getMessage()

    handler.setFormatter(Probe())
    handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "sent", None, None))
    assert held_while_formatting == [False] and stream.getvalue() == "sent\n"


def test_a_token_registered_after_the_first_record_is_scrubbed_too(capsys) -> None:
    """The redaction caches its token set: a sender's token registered later must still reach it."""
    logs.configure("INFO")
    log = logs.get_logger("t")
    log.info("before", note="nothing secret yet")
    logs.register_secret("late-sender-token-42")
    log.info(
        "after",
        note="header late-sender-token-42",
        nested={"authorization": "x", "body": ["late-sender-token-42"]},
    )
    err = capsys.readouterr().err
    after = json.loads(err.splitlines()[-1])
    assert "late-sender-token-42" not in err
    assert after["note"] == "header [redacted]" and after["nested"] == {
        "authorization": "[redacted]",
        "body": ["[redacted]"],
    }
