"""`wa-dispatch` in process (typer's CliRunner) against the running stack: with --json every command
prints one JSON document on stdout; without it, output is for a person and carries no log records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import spec_examples as spec
from tests.cli import RECIPIENTS, campaign_file, human, run

pytestmark = pytest.mark.integration
__all__ = ["campaign_file"]  # a fixture


def test_message_commands_print_one_json_document(stack, api, tmp_path: Path) -> None:
    intent = tmp_path / "intent.json"
    intent.write_text(json.dumps({"to": spec.TO, "type": "text", "text": {"body": "via the CLI"}}))
    sent = run("send", "-f", str(intent))
    assert sent["state"] == "SUCCESS" and sent["wamid"] == api.accepted()[0]["wamid"]
    assert run("status", sent["task_id"])["wamid"] == sent["wamid"]
    queued = run("send", "-f", str(intent), "--wait", "0")
    assert set(queued) == {"task_id", "state"}

    intent.write_text(json.dumps({"to": "12", "type": "text", "text": {"body": "x"}}))
    refused = run("send", "-f", str(intent), code=2)
    assert refused["kind"] == "invalid" and refused["errors"][0]["field"] == "to"

    api.faults({"status": 400, "code": 131047, "message": "Re-engagement message", "times": 1})
    intent.write_text(
        json.dumps({"to": spec.TO, "type": "text", "text": {"body": "fails"}, "idempotency_key": "cli-1"})
    )
    failed = run("send", "-f", str(intent), code=1)
    assert failed["state"] == "FAILURE" and failed["code"] == 131047
    assert [e["idempotency_key"] for e in run("failed", "list", "--code", "131047")] == ["cli-1"]
    [redriven] = run("failed", "redrive", "cli-1")
    assert redriven["idempotency_key"] == "cli-1" and redriven["error"] is None


def test_campaign_commands_print_one_json_document(stack, api, campaign_file: Path, tmp_path: Path) -> None:
    assert run("campaign", "load", str(campaign_file)) == [{"name": "cli-check", "recipients": 3}]
    done = run("campaign", "run", "cli-check", "--run-id", "json-1")
    assert done["sent"] == 3 and done["done"] is True
    assert run("campaign", "status", "cli-check", "json-1")["sent"] == 3
    report = run("campaign", "report", "cli-check", "json-1")
    assert sorted(r["to"] for r in report["recipients"]) == RECIPIENTS
    summary = run("campaign", "report", "cli-check", "json-1", "--csv", str(tmp_path / "r.csv"))
    assert summary["recipients"] == 3 and len((tmp_path / "r.csv").read_text().splitlines()) == 4
    assert run("campaign", "remove", "cli-check") == {"removed": "cli-check"}


def test_without_json_output_is_for_a_person(stack, api, campaign_file: Path, tmp_path: Path) -> None:
    out, err = human("campaign", "run", str(campaign_file), "--run-id", "human-1")
    for line in (out + err).splitlines():  # no JSON log record above the progress bar, nor a JSON dump
        assert not line.lstrip().startswith("{"), line
    assert "sent" in out and "3" in out

    out, _ = human("campaign", "report", "cli-check", "human-1", "--csv", str(tmp_path / "r.csv"))
    assert out.strip() == f"cli-check run human-1: 3 recipients written to {tmp_path / 'r.csv'}"
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4

    out, _ = human("campaign", "status", "cli-check", "human-1")
    assert "cli-check run human-1" in out and not out.lstrip().startswith("{")
