"""The monitoring in deploy/ as an operator relies on it: the alert rules pass promtool's check and
their unit tests (each alert fires on what it is for and not on the nearest thing that is fine),
every metric the rules and the dashboard query is one the code exports, the dashboard is the one
devtools.dashboard writes, and compose's monitoring profile mounts what exists.

promtool is Debian's (`make promtool`, a dependency of `make test`); without it these fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

from devtools import dashboard
from worker.ops import metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules.test.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "whatsapp-dispatch.json"
RUNBOOK = ROOT / "docs" / "monitoring.md"
# Series Prometheus itself writes: the alerts' state, and each target's scrape.
PROMETHEUS_OWN = {"ALERTS", "ALERTS_FOR_STATE", "up"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: `make promtool` installs Debian's prometheus package")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def panels() -> Iterator[dict[str, Any]]:
    yield from json.loads(DASHBOARD.read_text())["panels"]


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in panels() for t in p.get("targets", [])]
    return queries + [v["definition"] for v in doc["templating"]["list"] if v["type"] == "query"]


def exported() -> set[str]:
    """Every series name the workers and the web process can serve: the module's metrics (a
    labelled metric has no sample before its first use, so the names come from its type) and the
    families the scrape-time collectors read from Redis."""
    families: list[Metric] = list(REGISTRY.collect())
    client = redis.Redis()  # never connected: describe() reads nothing
    families += metrics.QueueDepth(client, (), "").describe()
    families += metrics.SendState(client, [], "", metrics.Liveness("", "", 1)).describe()
    return {family.name + suffix for family in families for suffix in SUFFIXES.get(family.type, ("",))}


def names_in(expr: str) -> set[str]:
    """The series an expression selects: every name that is not a function, keyword or label."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels
    )
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", without_ranges))
    return {t for t in tokens if t.startswith("wa_") or t in PROMETHEUS_OWN}


def test_the_rules_pass_promtools_check() -> None:
    out = promtool("check", "rules", RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr


def test_each_alert_fires_on_its_case_and_not_on_its_neighbour() -> None:
    out = promtool("test", "rules", RULE_TESTS.name)
    assert out.returncode == 0, out.stdout + out.stderr


def test_each_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    alerts = {rule["alert"] for rule in rules()}
    assert {name for name, kinds in cases.items() if kinds == {True, False}} == alerts


def test_the_scrape_config_is_valid_with_its_rules(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]  # where compose mounts rules.yml
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {job["job_name"] for job in config["scrape_configs"]} == {"worker", "web"}


def test_every_metric_the_rules_and_the_dashboard_query_is_exported() -> None:
    known = exported() | PROMETHEUS_OWN
    used = {name for rule in rules() for name in names_in(rule["expr"])}
    used |= {name for query in dashboard_queries() for name in names_in(query)}
    assert used - known == set()
    # The names the issue asks about are there, as the code spells them.
    assert {
        "wa_enqueue_to_first_attempt_seconds_bucket",
        "wa_enqueue_to_wamid_seconds_bucket",
        "wa_api_latency_seconds_bucket",
        "wa_webhook_accept_seconds_bucket",
        "wa_breaker_open",
        "wa_workers_alive",
        "wa_message_statuses_total",
    } <= used


def test_the_dashboards_queries_are_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, parsed by promtool as a recording rule."""
    filled = [
        q.replace("$__rate_interval", "5m").replace("$sender", ".*")
        for q in dashboard_queries()
        if not q.startswith("label_values(")
    ]
    doc = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"q{i}", "expr": q} for i, q in enumerate(filled)]}
        ]
    }
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(doc))
    out = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dashboard_file_is_what_devtools_dashboard_writes() -> None:
    assert DASHBOARD.read_text() == dashboard.render(), "run `python -m devtools.dashboard`"


def test_the_dashboard_has_the_panels_an_operator_looks_for_and_none_overlap() -> None:
    titles = {p["title"] for p in panels()}
    assert {
        "Sent by sender and type",
        "Failures by sender, kind and code",
        "Queue depth",
        "Parked",
        "Daily messaging limit used",
        "Breaker",
        "Enqueue to wamid (p50, p99)",
        "Webhook lag (p50, p99)",
        "Funnel by sender",
        "Recovery events (24 h)",
    } <= titles
    cells: set[tuple[int, int]] = set()
    for p in panels():
        g = p["gridPos"]
        assert g["x"] + g["w"] <= dashboard.WIDTH, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    # No panel groups by campaign or run: their labels grow without bound.
    assert not [q for q in dashboard_queries() if re.search(r"\b(campaign|run_id)\b", q)]


def test_every_alert_has_its_runbook_line_in_the_docs() -> None:
    text = RUNBOOK.read_text()
    for rule in rules():
        assert rule["annotations"]["runbook"] == f"docs/monitoring.md#{rule['alert'].lower()}"
        assert f"### {rule['alert']}\n" in text, f"docs/monitoring.md has no section for {rule['alert']}"


def test_compose_runs_prometheus_and_grafana_under_the_monitoring_profile_with_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / "deploy" / source).exists(), volume
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])  # inside only
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "whatsapp-dispatch.yaml").read_text()
    )
    mounted = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert provider["providers"][0]["options"]["path"] in mounted
