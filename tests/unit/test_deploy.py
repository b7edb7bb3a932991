"""deploy/ as far as this machine can check it: Kubernetes schemas, the compose spec, systemd
units, the Dockerfile's promises, and a Procfile whose commands exist."""

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from worker.redis_urls import check_deployment, sentinels

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def manifests() -> list[dict]:
    return [
        doc
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_kubernetes_manifests_match_the_schema(doc: dict) -> None:
    kubernetes_validate.validate(doc, "1.30", strict=True)


def test_kubernetes_shape() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in manifests()}
    beat = docs[("Deployment", "wa-dispatch-beat")]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    worker = docs[("Deployment", "wa-dispatch-worker")]["spec"]["template"]["spec"]["containers"][0]
    assert "livenessProbe" in worker and "readinessProbe" in worker
    assert worker["envFrom"] == [{"secretRef": {"name": "wa-dispatch"}}]
    assert not any(e["name"] == "INTERAKT_ACCESS_TOKEN" for e in worker.get("env", []))
    web = docs[("Deployment", "wa-dispatch-web")]["spec"]["template"]["spec"]["containers"][0]
    assert web["command"] == ["python", "-m", "worker.web"]
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["envFrom"] == [{"secretRef": {"name": "wa-dispatch"}}]
    ingress = docs[("Ingress", "wa-dispatch-web")]["spec"]
    assert ingress["tls"][0]["hosts"] == [ingress["rules"][0]["host"]]
    paths = ingress["rules"][0]["http"]["paths"]
    # The webhooks and the HTTP API are public; /metrics and /healthz are not.
    assert [p["path"] for p in paths] == ["/webhooks/whatsapp", "/v1", "/openapi.json", "/docs"]
    assert {p["backend"]["service"]["name"] for p in paths} == {"wa-dispatch-web"}
    assert ("Service", "wa-dispatch-web") in docs


def test_compose_file_matches_the_compose_spec() -> None:
    out = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert "--appendonly" in compose["services"]["redis"]["command"]
    assert compose["services"]["sandbox"]["profiles"] == ["sandbox"]
    assert compose["services"]["web"]["command"] == ["python", "-m", "worker.web"]
    assert "http://web:8000/webhooks/whatsapp" in compose["services"]["sandbox"]["command"]


def test_the_sentinel_override_points_every_process_at_three_sentinels_watching_the_primary() -> None:
    """compose.sentinel.yaml, laid over compose.yaml: a spec-valid file whose REDIS_URL the
    project reads as three Sentinels, on every process, and Sentinels and a replica that name
    the compose file's own Redis."""
    path = DEPLOY / "compose.sentinel.yaml"
    out = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    base = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    services = yaml.safe_load(path.read_text())["services"]
    for name in ("worker", "beat", "web", "flower"):
        url = services[name]["environment"]["REDIS_URL"]
        check_deployment(url, None, None)
        hosts = [host for host, _ in sentinels(url, "REDIS_URL").hosts]
        assert hosts == ["sentinel1", "sentinel2", "sentinel3"]
        assert set(services[name]["depends_on"]) == {"sentinel1", "sentinel2", "sentinel3"}
        assert name in base
    beat, web = services["beat"]["environment"], services["web"]["environment"]
    assert beat["DISPATCH_CAMPAIGNS"] == base["beat"]["environment"]["DISPATCH_CAMPAIGNS"]
    assert web["PORT"] == base["web"]["environment"]["PORT"]
    for n in (1, 2, 3):
        script = services[f"sentinel{n}"]["command"][-1]
        assert "sentinel monitor mymaster redis 6379 2" in script and "--sentinel" in script
    assert services["redis-replica"]["command"][-4:-2] == ["redis", "6379"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_units_verify() -> None:
    units = sorted(str(p) for p in (DEPLOY / "systemd").glob("*.service"))
    out = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_dockerfile_runs_as_non_root_on_a_slim_base_without_secrets() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "\nUSER dispatch" in text
    assert "INTERAKT_ACCESS_TOKEN=" not in text and "FLOWER_BASIC_AUTH=" not in text


def test_procfile_has_worker_beat_flower_and_web_with_commands_that_exist() -> None:
    processes = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
    )
    assert set(processes) == {"worker", "beat", "flower", "web"}
    for command in processes.values():
        assert (BIN / command.split()[0]).exists(), command


def test_no_runtime_state_is_committed_and_flower_state_is_ignored() -> None:
    """Flower's shelve files (flower.db.bak/.dat/.dir) are a run's state, not source: a clone that
    carries them starts Flower with someone else's task history."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not [p for p in tracked.stdout.splitlines() if Path(p).name.startswith("flower.db")]
    for name in ("flower.db", "flower.db.dat", "flower.db.bak", "flower.db.dir"):
        ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT)
        assert ignored.returncode == 0, f"{name} is not in .gitignore"
