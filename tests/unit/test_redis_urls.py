"""The deployment's Redis URLs: Sentinel URLs read as kombu and Celery read them, and every URL
no client could use refused with one line that names the variable and holds no password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.redis_urls import RedisUrlError, Sentinels, check_deployment, sentinels
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_a_sentinel_url_names_every_sentinel_the_database_and_the_primarys_password() -> None:
    found = sentinels("sentinel://:s3cret@h1:26380/2;sentinel://h2;sentinel://h3:26381/2", "REDIS_URL")
    assert found == Sentinels(hosts=(("h1", 26380), ("h2", 26379), ("h3", 26381)), db=2, password="s3cret")
    assert found.master_kwargs() == {"db": 2, "password": "s3cret"}


@pytest.mark.parametrize(
    ("redis_url", "broker", "backend", "named"),
    [
        ("foo://x", None, None, "REDIS_URL"),
        ("", None, None, "REDIS_URL"),
        ("sentinel://h1:26379;redis://h2:6379", None, None, "REDIS_URL"),
        ("sentinel://h1:port/0", None, None, "REDIS_URL"),
        ("sentinel://h1/0;sentinel://h2/1", None, None, "REDIS_URL"),
        ("sentinel://:pw@/0", None, None, "REDIS_URL"),
        ("redis://h:6379/zero", None, None, "REDIS_URL"),
        ("redis://h1:6379;redis://h2:6379", None, None, "REDIS_URL"),
        ("redis://h:6379/0", "sqs://", None, "CELERY_BROKER_URL"),
        ("redis://h:6379/0", None, "rpc://", "CELERY_RESULT_BACKEND"),
    ],
)
def test_a_url_no_client_can_use_is_refused_naming_its_variable(
    redis_url: str, broker: str | None, backend: str | None, named: str
) -> None:
    with pytest.raises(RedisUrlError) as refused:
        check_deployment(redis_url, broker, backend)
    assert str(refused.value).startswith(f"{named}: ") and "\n" not in str(refused.value)
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "rediss://:pw@h:6380/3",
        "unix:///run/redis.sock",
        "sentinel://h1;sentinel://h2:26380/0",
    ],
)
def test_urls_redis_py_reads_pass(url: str) -> None:
    check_deployment(url, "amqp://guest:guest@h:5672/vhost", url)


def test_a_sentinel_deployment_waits_for_one_replica_by_default_and_one_server_for_none() -> None:
    sentinel = "sentinel://h1:26379;sentinel://h2:26379/0"
    assert Settings(REDIS_URL=sentinel).replicas_waited == 1
    assert Settings(REDIS_URL="redis://h:6379/0").replicas_waited == 0
    assert Settings(REDIS_URL=sentinel, DISPATCH_REPLICA_ACKS=0).replicas_waited == 0


def test_a_process_started_with_a_url_it_cannot_use_says_so_in_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "sentinel://:hunter2@h1:26379;redis://h2", "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", "import worker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("whatsapp-dispatch: cannot start: REDIS_URL: ") and "hunter2" not in line
