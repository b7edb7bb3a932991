"""Campaign files: clear errors, cron fields, per-recipient filling, bad rows, send windows."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.campaigns.schedule import run_id_now
from worker.campaigns.spec import BadRow, CampaignError, cron_fields, in_window, intent_for, load_campaign

GOOD = """
name = "sale"
timezone = "Asia/Kolkata"
[schedule]
cron = "0 9 * * FRI"
[audience]
csv = "people.csv"
[message]
type = "text"
text = { body = "Hi {first_name}" }
"""


def write(tmp_path: Path, text: str, csv: str = "phone,first_name\n+919999595313,Asha\n") -> Path:
    (tmp_path / "people.csv").write_text(csv)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_a_good_file_loads_with_its_audience(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD))
    assert c.name == "sale" and c.rows == [{"phone": "+919999595313", "first_name": "Asha"}]
    assert intent_for(c, c.rows[0], "r1") == {
        "type": "text",
        "text": {"body": "Hi Asha"},
        "to": "+919999595313",
        "idempotency_key": "campaign:sale:r1:+919999595313",
    }


def test_syntax_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(CampaignError, match=r"line 3"):
        load_campaign(write(tmp_path, 'name = "x"\ntimezone = "UTC"\n[schedule\ncron = "* * * * *"\n'))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('cron = "0 9 * * FRI"', 'cron = "0 25 * * *"'), r"schedule: .*hour field '25'"),
        (('cron = "0 9 * * FRI"', 'every = 60\ncron = "* * * * *"'), "exactly one of 'cron', 'every'"),
        (('timezone = "Asia/Kolkata"', 'timezone = "Mars/Base"'), "timezone: unknown time zone"),
        (('name = "sale"', 'name = "Big Sale!"'), "name: String should match"),
        (('type = "text"', 'type = "txt"'), "message: type"),
        (('text = { body = "Hi {first_name}" }', 'text = { body = "" }'), r"message: text\.body"),
        (('csv = "people.csv"', 'csv = "missing.csv"'), "audience.csv: cannot read"),
        (
            ("[message]", '[message]\nto = "+919999595313"'),
            "'to' and 'idempotency_key' come from the audience",
        ),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    with pytest.raises(CampaignError, match=message):
        load_campaign(write(tmp_path, GOOD.replace(*change)))


def test_cron_fields() -> None:
    assert cron_fields("*/15 9-17 * * MON-FRI") == [
        [0, 15, 30, 45],
        list(range(9, 18)),
        None,
        None,
        [1, 2, 3, 4, 5],
    ]
    assert cron_fields("0 0 1,15 jan 7") == [[0], [0], [1, 15], [1], [0]]
    for bad in ["* * * *", "60 * * * *", "* * * * mon-xyz", "*/0 * * * *"]:
        with pytest.raises(ValueError):
            cron_fields(bad)


def test_bad_rows_are_reported_not_sent(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD, "phone,first_name\n12345,A\n+919999595313,\n"))
    with pytest.raises(BadRow, match="phone: not a valid phone number"):
        intent_for(c, c.rows[0], "r")
    with pytest.raises(BadRow, match="missing variable first_name"):
        intent_for(c, c.rows[1], "r")


def test_send_window_uses_the_recipients_zone(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD + '[window]\nstart = "09:00"\nend = "21:00"\n'))
    noon_india = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)  # 12:00 in Kolkata
    night_india = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)  # 00:00 in Kolkata, 13:30 in New York
    assert in_window(c, "+919999595313", noon_india)
    assert not in_window(c, "+919999595313", night_india)
    assert in_window(c, "+12125551234", night_india)


def test_run_ids_are_stable_within_a_scheduled_slot(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD))
    a = run_id_now(c, datetime(2026, 11, 27, 3, 30, 1, tzinfo=UTC))
    b = run_id_now(c, datetime(2026, 11, 27, 3, 30, 59, tzinfo=UTC))
    assert a == b == "20261127T0900"
    every = load_campaign(write(tmp_path, GOOD.replace('cron = "0 9 * * FRI"', "every = 10")))
    ids = [run_id_now(every, datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC)) for s in (1, 9, 10)]
    assert ids == ["1767225600", "1767225600", "1767225610"]  # one id per 10 s slot, the next slot a new one


def test_the_shipped_example_validates() -> None:
    c = load_campaign(Path(__file__).resolve().parents[2] / "deploy" / "campaigns" / "welcome.toml")
    assert c.name == "welcome" and len(c.rows) == 5
