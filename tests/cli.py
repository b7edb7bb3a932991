"""Driving `wa-dispatch` in process with typer's CliRunner, for the in-process and integration tiers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

RECIPIENTS = ["+919876500101", "+919876500102", "+919876500103"]


def run(*args: str, code: int = 0) -> Any:
    """The command's stdout, which must be exactly one JSON document."""
    from producers.cli import app

    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def human(*args: str) -> tuple[str, str]:
    from producers.cli import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout, result.stderr


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    path = tmp_path / "cli-check.toml"
    path.write_text(
        'name = "cli-check"\n[schedule]\nevery = 86400\n'
        f"[audience]\nnumbers = {json.dumps(RECIPIENTS)}\n"
        '[message]\ntype = "text"\ntext = { body = "Hello from the CLI test" }\n'
    )
    return path
