"""What an operator relies on: metrics, health, Flower (in a real browser), warm shutdown, and
the token absent from every output channel."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis
from celery import states

import producers
from tests import spec_examples as spec
from tests.harness import (
    BIN,
    PHONE_NUMBER_ID,
    TOKEN,
    Process,
    Worker,
    free_port,
    tmpdir,
    wait_for,
    worker_env,
)
from worker.delivery.errors import PermanentError

pytestmark = pytest.mark.integration
FLOWER_AUTH = "ops:flower-pass-7d1"


def http_get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def send_ok_and_failing(api) -> tuple[str, str]:
    api.faults({"status": 400, "code": 131047, "message": "Re-engagement message", "to": "+919876500011"})
    ok = producers.send_text(spec.TO, "metrics ok")
    bad = producers.send_text("+919876500011", "metrics bad")
    ok.get(timeout=30)
    with pytest.raises(PermanentError):
        bad.get(timeout=30)
    return ok.id, bad.id


def redis_values(url: str) -> str:
    """Every value in Redis, read by type: DUMP would hide a long value inside its LZF compression."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    read = {
        b"string": lambda k: [client.get(k)],
        b"list": lambda k: client.lrange(k, 0, -1),
        b"hash": lambda k: [b for kv in client.hgetall(k).items() for b in kv],
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1),
        b"stream": lambda k: [str(e).encode() for e in client.xrange(k)],
    }
    values = [
        v
        for key in client.scan_iter(count=1000)
        for v in [key, *read.get(client.type(key), lambda k: [])(key)]
    ]
    return "\n".join(v.decode(errors="replace") for v in values if v is not None)


def live_in_groups(groups: set[int]) -> list[str]:
    """Processes (not zombies) still in any of these process groups, from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(pgrp) in groups and state != "Z":
            alive.append(stat.parent.name)
    return alive


def test_metrics_count_sends_failures_and_latency(stack, api) -> None:
    send_ok_and_failing(api)
    status, text = http_get(f"http://127.0.0.1:{stack.metrics_port}/metrics")
    assert status == 200
    sent = [
        line
        for line in text.splitlines()
        if line.startswith('wa_messages_sent_total{sender="default",type="text"}')
    ]
    assert sent and float(sent[0].split()[-1]) >= 1
    assert 'wa_messages_failed_total{code="131047",kind="permanent",sender="default",type="text"}' in text
    assert "wa_api_latency_seconds_bucket" in text and 'wa_queue_depth{queue="whatsapp"}' in text
    assert TOKEN not in text and "9999595313" not in text


def test_health_passes_against_the_stack_and_fails_without_redis(stack) -> None:
    env = worker_env(stack.redis.url, stack.sandbox.api_url)
    out = subprocess.run(
        [str(BIN / "wa-dispatch"), "health", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    report = json.loads(out.stdout)
    assert out.returncode == 0, report
    assert report["workers"]["ok"] and report["api"]["tls"] == "plain http"
    env["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    out = subprocess.run(
        [str(BIN / "wa-dispatch"), "health", "--check", "redis", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and not json.loads(out.stdout)["redis"]["ok"]
    assert TOKEN not in out.stdout + out.stderr


def start_flower(stack, workdir: Path, wait_events: bool = True) -> tuple[str, Process]:
    port = free_port()
    env = worker_env(
        stack.redis.url,
        "https://amped-express.interakt.ai/api/v17.0",
        FLOWER_BASIC_AUTH=FLOWER_AUTH,
        FLOWER_DB=str(workdir / "flower.db"),
    )
    process = Process("flower", workdir)
    process.spawn(
        [str(BIN / "wa-dispatch"), "flower", "--port", str(port), "--address", "127.0.0.1"], env=env
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: http_get(base + "/healthcheck")[0] == 200, 30, "flower")
    if wait_events:
        # Flower asks the workers to send task events every few seconds; wait for the first "yes",
        # then for a worker heartbeat event to reach this Flower (its receiver is connected).
        wait_for(lambda: "enabled by remote" in stack.worker.output(), 30, "task events", 0.2)
        wait_for(
            lambda: "flower_worker_online{" in http_get(base + "/metrics", FLOWER_AUTH)[1],
            30,
            "events in Flower",
            0.5,
        )
    return base, process


@pytest.fixture
def flower(stack):
    base, process = start_flower(stack, tmpdir("wa-flower-"))
    yield base, process
    process.stop()


def test_flower_keeps_its_state_across_a_restart(stack, api) -> None:
    workdir = tmpdir("wa-flower-")
    base, process = start_flower(stack, workdir)
    task_id = producers.send_text(spec.TO, "remember me").id
    wait_for(
        lambda: (
            json.loads(http_get(base + "/api/tasks", FLOWER_AUTH)[1]).get(task_id, {}).get("state")
            == "SUCCESS"
        ),
        20,
        "the task's success in Flower",
    )
    process.stop()
    base, process = start_flower(stack, workdir, wait_events=False)
    try:
        assert json.loads(http_get(base + "/api/tasks", FLOWER_AUTH)[1])[task_id]["state"] == "SUCCESS"
    finally:
        process.stop()


def test_flower_shows_tasks_masked_with_api_error_codes_and_needs_auth(stack, api, flower) -> None:
    base, _ = flower
    ok_id, bad_id = send_ok_and_failing(api)
    assert http_get(base + "/tasks")[0] == 401  # no credentials, no dashboard

    def final(tasks: dict) -> dict | None:
        done = all(tasks.get(t, {}).get("state") in states.READY_STATES for t in (ok_id, bad_id))
        return tasks if done else None

    tasks = wait_for(
        lambda: final(json.loads(http_get(base + "/api/tasks", FLOWER_AUTH)[1])),
        20,
        "both tasks finished in Flower",
    )
    assert tasks[ok_id]["state"] == "SUCCESS" and tasks[bad_id]["state"] == "FAILURE"
    assert "131047" in tasks[bad_id]["exception"]
    assert "+91******0011" in tasks[bad_id]["kwargs"]  # mask_phone keeps "+" and the first two digits
    assert "+91******5313" in tasks[ok_id]["result"] and "9999595313" not in tasks[ok_id]["result"]
    dump = json.dumps(tasks)
    assert TOKEN not in dump and "9876500011" not in dump

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs Debian's package)")
    user, password = FLOWER_AUTH.split(":")
    shots = Path(os.environ.get("ARTIFACTS", tmpdir("wa-artifacts-")))
    for task_id, must in (
        (bad_id, ["FAILURE", "131047", "+91******0011"]),
        (ok_id, ["SUCCESS", "wamid.", "+91******5313"]),
    ):
        url = f"http://{user}:{password}@127.0.0.1:{base.rsplit(':', 1)[1]}/task/{task_id}"
        args = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmpdir('wa-chrome-')}",
            "--virtual-time-budget=5000",
        ]
        page = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=90).stdout
        for text in must:
            assert text in page, (text, page[:2000])
        assert TOKEN not in page and "9876500011" not in page and "9999595313" not in page
        subprocess.run(
            [*args, f"--screenshot={shots / f'flower-{task_id}.png'}", "--window-size=1280,900", url],
            capture_output=True,
            timeout=90,
        )


def test_warm_shutdown_finishes_sends_in_flight(stack, api, tmp_path) -> None:
    env = worker_env(stack.redis.url, stack.sandbox.api_url)
    worker = Worker(tmp_path, env, stack.redis.url, name="draining", concurrency=8).start()
    api.faults(latency=0.4)
    try:
        results = [producers.send_text(f"+91987650{i:04d}", f"warm {i}") for i in range(40)]
        wait_for(lambda: len(api.requests()) >= 8, 20, "sends in flight")
        worker.signal(signal.SIGTERM)  # warm shutdown: no new tasks, running ones finish
        returncode = worker.proc.wait(30)
        outcomes = [r.get(timeout=60) for r in results]  # the session worker takes what was not started
    finally:
        api.faults(latency=0.0)
        worker.stop()
    assert all(o["wamid"].startswith("wamid.") for o in outcomes)
    assert len(api.accepted()) == 40  # nothing lost, nothing twice, nothing left ambiguous
    assert returncode == 0  # celery's warm shutdown exits EX_OK; a cold or forced stop does not
    assert "worker: Warm shutdown (MainProcess)" in worker.output()


def test_the_token_is_in_no_output_channel(stack, api) -> None:
    from worker.services import services

    send_ok_and_failing(api)
    channels = {
        "worker log": stack.worker.output(),
        "dead letters": json.dumps(services().send.dead.list(limit=1000)),
        "redis": redis_values(stack.redis.url),
        "metrics": http_get(f"http://127.0.0.1:{stack.metrics_port}/metrics")[1],
    }
    leaks = [name for name, text in channels.items() if TOKEN in text]
    assert not leaks, leaks
    requests = api.requests()
    assert len(requests) == 2  # the sent one and the refused one
    for request in requests:  # it did reach the API, on the configured number's path
        assert request["headers"]["x-access-token"] == TOKEN and request["phone_number_id"] == PHONE_NUMBER_ID


def test_honcho_runs_the_procfile(stack, tmp_path) -> None:
    port, web_port = free_port(), free_port()
    env = worker_env(
        stack.redis.url,
        stack.sandbox.api_url,
        DISPATCH_WEBHOOK_SECRET="honcho-secret",
        FLOWER_PORT=str(port),
        FLOWER_BASIC_AUTH=FLOWER_AUTH,
        FLOWER_DB=str(tmp_path / "flower.db"),
        WORKER_CONCURRENCY="4",
        PATH=f"{BIN}:{os.environ['PATH']}",
    )
    honcho = Process("honcho", tmp_path)
    # honcho gives each process type its own $PORT, 100 apart from --port in Procfile order; web is
    # the fourth, so this puts it on web_port.
    procfile = str(Path(__file__).resolve().parents[2] / "Procfile")
    honcho.spawn([str(BIN / "honcho"), "start", "-f", procfile, "-p", str(web_port - 300)], env=env)
    try:
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{port}/healthcheck")[0] == 200, 40, "flower under honcho"
        )
        wait_for(lambda: "maxinterval" in honcho.output(), 20, "beat under honcho")  # its banner
        wait_for(lambda: http_get(f"http://127.0.0.1:{web_port}/healthz")[0] == 200, 20, "web under honcho")
        outcome = producers.send_text(spec.TO, "via honcho").get(timeout=30)
        assert outcome["wamid"].startswith("wamid.")
    finally:
        honcho.stop(timeout=30)
    output = honcho.output()
    started = {name: int(pid) for name, pid in re.findall(r"\| (\w+)\.1 started \(pid=(\d+)\)", output)}
    assert set(started) == {"worker", "beat", "flower", "web"}, output[-3000:]
    assert honcho.proc.returncode == 143, output[
        -3000:
    ]  # honcho's own SIGTERM exit, not the SIGKILL of stop()
    assert all(f"| {name}.1 stopped (rc=" in output for name in started), output[-3000:]
    assert not live_in_groups({honcho.proc.pid, *started.values()})  # each runs in its own process group


def test_prefork_children_are_counted_in_one_scrape(stack, api, tmp_path) -> None:
    port = free_port()
    (tmp_path / "prom").mkdir()
    env = worker_env(
        stack.redis.url,
        stack.sandbox.api_url,
        DISPATCH_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
    )
    worker = Worker(
        tmp_path,
        env,
        stack.redis.url,
        name="prefork",
        pool="prefork",
        concurrency=2,
        args=("-Q", "prefork-only"),
    ).start()
    try:
        results = [
            producers.send_document(spec.TO, link=f"https://example.com/{i}.pdf", queue="prefork-only")
            for i in range(6)
        ]
        assert len({r.get(timeout=30)["wamid"] for r in results}) == 6
        status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    finally:
        worker.stop()
    assert status == 200
    assert 'wa_messages_sent_total{sender="default",type="document"} 6.0' in text  # both children, one scrape
    assert len(list((tmp_path / "prom").glob("counter_*.db"))) == 2
