"""Meta's messaging limit (daily_limit) with a real worker: a campaign's template sends beyond it
wait, parked, and `campaign status` says until when; a transactional template still goes at once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.localstack import RedisServer
from tests.harness import Sandbox, Worker, tmpdir, wa_dispatch, wait_for, worker_env
from worker.delivery.parking import PARKED
from worker.delivery.reach import WINDOW

pytestmark = pytest.mark.integration

AUDIENCE = [f"+9198765003{i:02d}" for i in range(5)]


def cli(env: dict[str, str], *args: str) -> Any:
    return wa_dispatch(env, *args)


def send_template(env: dict[str, str], folder: Path, to: str) -> Any:
    intent = {
        "to": to,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ravi"}]}],
        },
    }
    path = folder / f"{to}.json"
    path.write_text(json.dumps(intent))
    return cli(env, "send", "-f", str(path))


def template_campaign(folder: Path) -> Path:
    rows = "\n".join(f"{to},Asha" for to in AUDIENCE)
    (folder / "promo.csv").write_text(f"phone,first_name\n{rows}\n")
    path = folder / "promo.toml"
    path.write_text(
        'name = "promo"\n[schedule]\nevery = 86400\n[audience]\ncsv = "promo.csv"\n'
        '[message]\ntype = "template"\n'
        'template = { name = "order_update", language = { code = "en_US" }, '
        'components = [{ type = "body", parameters = [{ type = "text", text = "{first_name}" }] }] }\n'
    )
    return path


def test_campaign_sends_beyond_the_messaging_limit_wait_and_transactional_ones_go(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    workdir = tmpdir("wa-limit-")
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/4"
    sandbox = Sandbox(workdir).start()
    env = worker_env(redis_url, sandbox.api_url, DISPATCH_DAILY_LIMIT="3")
    worker = Worker(workdir, env, redis_url, name="worker-limit").start()
    try:
        assert send_template(env, tmp_path, "+919876500399")["state"] == "SUCCESS"  # 1 of 3

        cli(env, "campaign", "run", str(template_campaign(tmp_path)), "--run-id", "r1", "--no-wait")
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        wait_for(lambda: client.zcard(PARKED) == 3, 60, "three campaign sends parked")
        status = cli(env, "campaign", "status", "promo", "r1")
        assert status["sent"] == 2 and status["failed"] == 0 and not status["done"]
        until = status["waiting_for_daily_limit_until"]
        assert time.time() + WINDOW - 120 < until <= time.time() + WINDOW + 1
        # The parked ones are due when room frees, not retried meanwhile.
        due = [score for _, score in client.zrange(PARKED, 0, -1, withscores=True)]
        assert all(abs(score - until) < 5 for score in due), due

        after = send_template(env, tmp_path, "+919876500398")
        assert after["state"] == "SUCCESS"  # transactional: counted (4 of 3) and sent, not held
        sent_to = [r["body"]["to"] for r in sandbox.requests() if r.get("wamid")]
        assert len(sent_to) == 4 and "+919876500398" in sent_to
    finally:
        worker.stop()
        sandbox.stop()
