"""A private deployment for one fault test: redis-server, sandbox, N workers, an app-side Celery client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from devtools.localstack import SentinelGroup
from tests.harness import (
    ROOT,
    TOKEN,
    Beat,
    RabbitVhost,
    RedisServer,
    Sandbox,
    Worker,
    wa_dispatch,
    wait_for,
    worker_env,
)
from worker.delivery.errors import DispatchError

BATCH = 500
RATE_LIMIT = 100  # messages/s for the sending number in these tests, unless a test sets its own
PRODUCTION_RATE = 80  # DISPATCH_RATE_LIMIT's default


def recipient(i: int) -> str:
    return f"+91987{i:07d}"


def body_of(request: dict[str, Any]) -> str:
    return request["body"]["text"]["body"]


@dataclass
class Report:
    sent: int = 0
    failed_kinds: Counter = field(default_factory=Counter)
    attempts: list[int] = field(default_factory=list)
    received_per_intent: Counter = field(default_factory=Counter)
    worst_second: int = 0


class Rig:
    def __init__(
        self,
        workdir: Path,
        workers: int,
        persistent_redis: bool,
        latency: float,
        probe_interval: float,
        rate_limit: int = RATE_LIMIT,
        broker: str = "redis",
        concurrency: int = 16,
        production_timings: bool = False,
        sandbox_host: str = "127.0.0.1",
        **env: str,
    ) -> None:
        self.rate_limit = rate_limit
        self.redis = RedisServer(workdir, persistent=persistent_redis).start()
        self.vhost = RabbitVhost() if broker == "rabbitmq" else None
        self.broker_url = self.vhost.url if self.vhost else self.redis.url
        self.concurrency = concurrency
        self.sandbox = Sandbox(workdir, latency=latency, token=TOKEN, host=sandbox_host).start()
        fast = {
            "DISPATCH_READ_TIMEOUT": "1",
            "DISPATCH_CONNECT_TIMEOUT": "0.5",
            "DISPATCH_INLINE_ATTEMPTS": "2",
            "DISPATCH_INLINE_MAX_WAIT": "1",
            "DISPATCH_REQUEUE_BACKOFF": "0.3",
            "DISPATCH_REQUEUE_MAX_WAIT": "2",
            "DISPATCH_MAX_ATTEMPTS": "10",
            "DISPATCH_BREAKER_PROBE_INTERVAL": str(probe_interval),
        }
        overrides = {
            "DISPATCH_RATE_LIMIT": str(rate_limit),
            "DISPATCH_LOG_LEVEL": "WARNING",
            **({} if production_timings else fast),
            **env,
        }
        self.workdir = workdir
        if self.vhost:
            overrides["CELERY_BROKER_URL"] = self.vhost.url
        self.env = worker_env(self.redis.url, self.sandbox.api_url, not production_timings, **overrides)
        self.workers: list[Worker] = []
        for _ in range(workers):
            self.add_worker()
        self.beats: list[Beat] = []
        self.intents: dict[str, dict[str, Any]] = {}
        self.client = Celery("app", broker=self.broker_url, backend=self.redis.url)
        self.client.conf.update(
            task_default_queue="whatsapp",
            task_publish_retry_policy={
                "max_retries": 20,
                "interval_start": 0.2,
                "interval_step": 0.5,
                "interval_max": 1.0,
            },
            broker_connection_retry_on_startup=True,
        )

    def add_worker(self, netns: str | None = None, **env: str) -> Worker:
        """Another worker; `netns` runs it on a test host of its own, `env` changes its settings
        (the addresses that host reaches Redis and the API by)."""
        name = f"worker{len(self.workers)}"
        worker = Worker(
            self.workdir,
            {**self.env, **env},
            self.broker_url,
            name=name,
            concurrency=self.concurrency,
            netns=netns,
        )
        self.workers.append(worker.start())
        return worker

    def produce(self, n: int, first: int = 0, pace: float = 0.0, **send: Any) -> list[str]:
        """Enqueue through the project's own app (`producers.send_text`), in an app process of its
        own, as apps do: the path that records each intent in the ledger. `pace`: seconds between
        two intents."""
        script = (
            "import json, sys, time\n"
            "from producers import send_text\n"
            "ids = []\n"
            f"for i in range({first}, {first + n}):\n"
            f"    ids.append(send_text('+91987%07d' % i, 'intent-%d' % i, **{send!r}).id)\n"
            f"    time.sleep({pace!r})\n"
            "print(json.dumps(ids))\n"
        )
        ids: list[str] = self.app_process(script)
        return ids

    def app_process(self, script: str, timeout: float = 120) -> Any:
        """Run `script` as an app does (the project's app, no token) and read the JSON document
        its last line prints."""
        env = {k: v for k, v in self.env.items() if not k.startswith("INTERAKT_")}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def enqueue(
        self,
        n: int,
        key: Callable[[int], str] | None = None,
        pace: float = 0.0,
        to: Callable[[int], str] = recipient,
        first: int = 0,
    ) -> list[str]:
        ids = []
        for i in range(first, first + n):
            intent: dict[str, Any] = {"to": to(i), "type": "text", "text": {"body": f"intent-{i}"}}
            if key:
                intent["idempotency_key"] = key(i)
            task_id = self.client.send_task("worker.tasks.send_message", kwargs=intent).id
            self.intents[task_id] = intent
            ids.append(task_id)
            if pace:
                time.sleep(pace)
        return ids

    def kill_mid_batch(self, batch: int, first: int) -> float:
        """SIGKILL the busy worker a third of the way through a batch and start another at once;
        every intent must settle (a wamid, or `ambiguous` for one that may have reached the API),
        none twice. Returns the seconds from the kill to the last intent settled."""
        ids = self.produce(batch, first=first)
        already = len(self.sandbox.accepted())
        self.wait_accepted(already + batch // 3)
        self.workers[-1].kill()
        killed_at = time.monotonic()
        self.add_worker()
        outcomes = self.collect(ids, timeout=90)
        settled = time.monotonic() - killed_at
        report = self.check(outcomes)
        assert set(report.failed_kinds) <= {"ambiguous"}, report.failed_kinds
        assert report.sent + sum(report.failed_kinds.values()) == batch
        # Ambiguous: the dead worker had marked them `sending` (due now, or on the wire). That is
        # at most what the limit lets out in about a second, never the hundreds it had reserved.
        ambiguous = report.failed_kinds["ambiguous"]
        assert ambiguous <= self.rate_limit, f"{ambiguous} ambiguous after one kill"
        assert settled <= 60, f"the last intent settled {settled:.1f}s after the kill"
        return settled

    def wait_accepted(self, n: int) -> None:
        wait_for(lambda: len(self.sandbox.accepted()) >= n, 60, f"{n} accepted messages", interval=0.02)

    def collect(self, ids: list[str], timeout: float) -> dict[str, Any]:
        """Each task's final value: its result dict, or the exception it failed with."""
        deadline = time.monotonic() + timeout
        outcomes: dict[str, Any] = {}
        for task_id in ids:
            while task_id not in outcomes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(self._unaccounted(ids, outcomes, timeout))
                try:
                    result = AsyncResult(task_id, app=self.client)
                    value = result.get(timeout=min(left, 10), propagate=False)
                    if result.state in ("SUCCESS", "FAILURE"):
                        outcomes[task_id] = value
                except Exception:  # noqa: BLE001 - Redis restarting, or not finished yet: ask again
                    time.sleep(0.2)
        return outcomes

    def _unaccounted(self, ids: list[str], outcomes: dict[str, Any], timeout: float) -> str:
        """Which intents have no outcome (collect waits on them in order: the ones after the first
        may have ended), and where the broker's messages are."""
        missing = [
            task_id
            for task_id in ids
            if task_id not in outcomes
            and AsyncResult(task_id, app=self.client).state not in ("SUCCESS", "FAILURE")
        ]
        try:
            client = self.redis.client()
            lists = {q: client.llen(q) for q in ("whatsapp", "whatsapp.released", "campaign")}
            unacked = {
                key: client.hlen(key) for key in client.scan_iter("*unacked*") if client.type(key) == "hash"
            }
            where = f"queues {lists}, unacked {unacked}"
        except Exception as exc:  # noqa: BLE001 - a diagnosis only
            where = f"broker unreadable: {exc!r}"
        return f"{len(missing)} intents not accounted for after {timeout}s (first {missing[:3]}); {where}"

    def check(
        self, outcomes: dict[str, Any], at_least_once: bool = False, rate_checked: bool = True
    ) -> Report:
        requests = [r for r in self.sandbox.requests() if isinstance(r.get("body"), dict)]
        accepted = Counter(body_of(r) for r in requests if r.get("wamid"))
        wamids = {r["wamid"]: body_of(r) for r in requests if r.get("wamid")}
        report = Report(received_per_intent=Counter(body_of(r) for r in requests))
        for task_id, value in outcomes.items():
            if isinstance(value, dict):
                assert value["wamid"] in wamids, f"{task_id}: wamid {value['wamid']} was never issued"
                report.sent += 1
                report.attempts.append(value["attempts"])
            else:
                assert isinstance(value, DispatchError) and value.info.get("kind"), f"{task_id}: {value!r}"
                report.failed_kinds[value.info["kind"]] += 1
        if not at_least_once:
            twice = {body: n for body, n in accepted.items() if n > 1}
            assert not twice, f"accepted more than once: {twice}"
        times = sorted(r["time"] for r in requests)
        worst = max((_in_window(times, i) for i in range(len(times))), default=0)
        if rate_checked:  # a soak reports the worst second of each round instead
            assert worst <= self.rate_limit * 1.05, (
                f"{worst} requests in one second (limit {self.rate_limit})"
            )
        report.worst_second = worst
        return report

    def stop(self) -> None:
        for worker in self.workers + self.beats:
            worker.kill()
        self.sandbox.stop()
        self.redis.kill()
        if self.vhost:
            self.vhost.delete()


def cli(rig: Rig, *args: str) -> Any:
    return wa_dispatch(rig.env, *args, timeout=60)


def write_campaign(folder: Path, name: str, rows: list[str], schedule: str, extra: str = "") -> Path:
    (folder / f"{name}.csv").write_text("phone,first_name\n" + "\n".join(rows) + "\n")
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ntimezone = "UTC"\n{extra}\n[schedule]\n{schedule}\n'
        f'[audience]\ncsv = "{name}.csv"\n[message]\ntype = "text"\n'
        'text = { body = "Hello {first_name}" }\n'
    )
    return path


def _in_window(times: list[float], start: int) -> int:
    """How many requests arrived within one second of request `start`."""
    end = start
    while end < len(times) and times[end] - times[start] < 1.0:
        end += 1
    return end - start


# --- Redis behind Sentinels (test_failover.py, bench/failover_soak.py) -------------------------

# The Sentinels' own setting (production: 5 to 30 s); the project's recovery settings stay at
# their defaults. A second is enough for three Sentinels on one host to agree the primary is gone.
DOWN_AFTER_MS = 1000


@dataclass
class Failover:
    """One batch through one failover: what the app enqueued, what became of it, how long."""

    enqueued: int
    refused: int
    sent: int
    ambiguous: int
    other_failures: int
    twice: int  # recipients the sandbox accepted more than once
    lost: int
    promotion_s: float  # from the kill to a replica named primary
    settled_s: float  # from the promotion to the last intent settled
    refusals: list[str]


class FailoverRig(Rig):
    """Rig's checks and collection over a primary, one replica and three Sentinels instead of one
    redis-server; two workers (64 threads each, as in the Procfile) and apps reach it through
    `REDIS_URL=sentinel://...`, every recovery setting at its production default."""

    def __init__(self, workdir: Path, workers: int = 2) -> None:
        self.group = SentinelGroup(workdir, replicas=1, down_after_ms=DOWN_AFTER_MS)
        self.redis = self.group.primary
        self.vhost = None
        self.rate_limit = PRODUCTION_RATE
        self.concurrency = 64
        self.workdir = workdir
        self.sandbox = Sandbox(workdir, latency=0.05, token=TOKEN).start()
        self.env = worker_env(
            self.group.url,
            self.sandbox.api_url,
            False,
            DISPATCH_RATE_LIMIT=str(PRODUCTION_RATE),
            DISPATCH_LOG_LEVEL="WARNING",
        )
        # Workers are pinged at start through the primary itself (the harness's control client
        # speaks one Redis); they read the broker through the Sentinels.
        self.broker_url = self.group.primary.url
        self.workers: list[Worker] = []
        self.beats = []
        self.intents: dict[str, dict[str, Any]] = {}
        for _ in range(workers):
            self.add_worker()
        self.client = Celery("app", broker=self.group.url, backend=self.group.url)
        options = {"master_name": "mymaster"}
        self.client.conf.update(
            broker_transport_options=options,
            result_backend_transport_options=options,
            broker_connection_retry_on_startup=True,
        )

    def enqueue_in_background(self, n: int, pace: float, first: int = 0) -> subprocess.Popen[str]:
        """An app process enqueueing `n` intents through `producers.send_text`, one each `pace`
        seconds; it prints, at the end, the ids whose enqueue returned and the count refused."""
        script = (
            "import json, sys, time\n"
            "from producers import send_text\n"
            "from worker.delivery.errors import EnqueueError\n"
            "ids, refused = [], 0\n"
            f"for i in range({first}, {first + n}):\n"
            "    try:\n"
            "        ids.append(send_text('+91987%07d' % i, 'intent-%d' % i).id)\n"
            "    except EnqueueError as exc:\n"
            "        refused += 1\n"
            "        print('refused:', exc, file=sys.stderr)\n"
            f"    time.sleep({pace!r})\n"
            "print(json.dumps({'ids': ids, 'refused': refused}))\n"
        )
        env = {k: v for k, v in self.env.items() if not k.startswith("INTERAKT_")}
        return subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def fail_over(self) -> tuple[RedisServer, float, float]:
        """SIGKILL the primary and wait for the Sentinels to promote the replica: (the server
        killed, killed at, promoted at), monotonic."""
        primary = self.group.current()
        primary.kill()
        killed_at = time.monotonic()
        wait_for(lambda: self.group.current() is not primary, 30, "a replica promoted", 0.05)
        self.redis = self.group.current()  # where Rig's diagnosis looks for queues
        return primary, killed_at, time.monotonic()

    def batch_through_failover(self, batch: int, first: int = 0, rate_checked: bool = True) -> Failover:
        """An app enqueues `batch` intents faster than they are sent; the primary dies a quarter
        of the way through. Rig.check fails on an intent's body accepted twice (and, with
        `rate_checked`, on the limit broken)."""
        already = len(self.sandbox.accepted())
        app = self.enqueue_in_background(batch, pace=1 / (PRODUCTION_RATE * 1.5), first=first)
        self.wait_accepted(already + batch // 4)
        _, killed_at, promoted_at = self.fail_over()
        out, err = app.communicate(timeout=120)
        assert app.returncode == 0, err[-2000:]
        enqueued = json.loads(out.strip().splitlines()[-1])
        ids: list[str] = enqueued["ids"]
        outcomes = self.collect(ids, timeout=90)
        settled = time.monotonic() - promoted_at
        report = self.check(outcomes, rate_checked=rate_checked)
        accepted = Counter(r["body"]["to"] for r in self.sandbox.accepted())
        ambiguous = report.failed_kinds["ambiguous"]
        return Failover(
            enqueued=len(ids),
            refused=enqueued["refused"],
            sent=report.sent,
            ambiguous=ambiguous,
            other_failures=sum(report.failed_kinds.values()) - ambiguous,
            twice=sum(1 for n in accepted.values() if n > 1),
            lost=len(ids) - len(outcomes),
            promotion_s=promoted_at - killed_at,
            settled_s=settled,
            refusals=[line for line in err.splitlines() if line.startswith("refused:")],
        )

    def rejoin(self, server: RedisServer) -> None:
        """Start a killed server again: the Sentinels make it a replica of the new primary; back
        once it has synced (the next failover has a replica to promote)."""
        server.start()
        wait_for(
            lambda: server.client().info("replication").get("master_link_status") == "up",
            60,
            f"{server.name} synced as a replica",
            0.2,
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.sandbox.stop()
        self.group.stop()
