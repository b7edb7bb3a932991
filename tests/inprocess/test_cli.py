"""Operator commands in process against the session's Redis: each prints one JSON document with --json."""

from __future__ import annotations

from pathlib import Path

from devtools.localstack import RedisServer
from tests.cli import RECIPIENTS, campaign_file, human, run

__all__ = ["campaign_file"]  # a fixture


def test_breaker_commands(redis_server: RedisServer) -> None:
    assert run("pause", "--reason", "cli check")["state"] == "open"
    assert run("breaker")["message"] == "cli check"
    assert run("resume")["state"] == "closed"
    out, _ = human("breaker")
    assert "account circuit breaker" in out and "closed" in out


def test_optout_commands(redis_server: RedisServer) -> None:
    assert run("optout", "add", RECIPIENTS[0]) == {"added": 1}
    assert run("optout", "add", RECIPIENTS[0]) == {"added": 0}  # the first reason and time are kept
    listed = {row["number"]: row for row in run("optout", "list")}
    assert listed[RECIPIENTS[0]]["reason"] == "operator" and listed[RECIPIENTS[0]]["at"] > 0
    out, _ = human("optout", "list")
    assert "operator" in out and "UTC" in out
    assert run("optout", "remove", RECIPIENTS[0]) == {"removed": 1}
    assert RECIPIENTS[0] not in {row["number"] for row in run("optout", "list")}
    refused = run("optout", "add", "12", code=2)
    assert refused["error"].startswith("not a phone number")


def test_health_and_dead_letters(redis_server: RedisServer) -> None:
    assert run("health", "--check", "redis")["redis"]["ok"] is True
    assert run("health", "--check", "nonsense", code=2)["error"].startswith("unknown checks ['nonsense']")
    assert isinstance(run("failed", "list", "--code", "1"), list)
    assert run("failed", "redrive", "no-such-key", code=1)[0]["error"] == "no dead letter with this key"


def test_campaign_files_are_checked_without_a_worker(campaign_file: Path) -> None:
    [valid] = run("campaign", "validate", str(campaign_file))
    assert valid["name"] == "cli-check" and valid["recipients"] == 3
    preview = run("campaign", "preview", str(campaign_file))
    assert preview["sendable"] == 3 and [i["to"] for i in preview["intents"]] == RECIPIENTS
    out, _ = human("campaign", "preview", str(campaign_file))
    assert "cli-check: 3 of 3 recipients sendable" in out
