"""Local processes for `make run`, the tests and the benchmarks: redis-server (alone, or a primary
with a replica and Sentinels), the sandbox, celery workers.

Each starts on a free loopback port (or a given one), writes its output to a log file, and can be
stopped, killed and started again, so fault tests can take a service away and bring it back.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGTERM when the process that started it dies,
    so nothing started here outlives its parent, even one killed with SIGKILL (Linux only)."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the service is still starting
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s ({last!r})")


class Process:
    """A child process whose combined output goes to a log file."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.close()

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(Process):
    """`persistent`: an append-only file fsynced on every write, as production runs it.
    `replica_of`: the port of a primary on this host to replicate."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistent: bool = False,
        name: str = "redis",
        replica_of: int | None = None,
    ) -> None:
        super().__init__(name, workdir)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.persistent = persistent
        self.replica_of = replica_of

    def start(self) -> RedisServer:
        aof = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        )
        self.spawn(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *aof,
                "--dir",
                str(self.workdir),
                "--dbfilename",
                f"{self.name}.rdb",  # a replica's first sync writes one unless diskless
                *(
                    ["--replicaof", "127.0.0.1", str(self.replica_of), "--repl-diskless-load", "on-empty-db"]
                    if self.replica_of
                    else ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
                ),
            ]
        )
        wait_for(lambda: self.client().ping(), 10, "redis-server")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)


class RedisSentinel(Process):
    """One Sentinel (`redis-server <conf> --sentinel`) watching the primary as MASTER_NAME. The
    Sentinel's own timings are its config: `down_after_ms` is how long the primary may be silent
    before it is taken for down (production: 5 to 30 s)."""

    MASTER_NAME = "mymaster"

    def __init__(self, workdir: Path, primary_port: int, name: str, down_after_ms: int = 1000) -> None:
        super().__init__(name, workdir)
        self.port = free_port()
        self.conf = workdir / f"{name}.conf"
        self.primary_port = primary_port
        self.down_after_ms = down_after_ms

    def start(self) -> RedisSentinel:
        master = self.MASTER_NAME
        self.conf.write_text(  # Sentinel rewrites its config file as it learns: one of its own
            f"port {self.port}\nbind 127.0.0.1\ndir {self.conf.parent}\n"
            f"sentinel monitor {master} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {master} {self.down_after_ms}\n"
            f"sentinel failover-timeout {master} {max(3000, self.down_after_ms * 3)}\n"
            f"sentinel parallel-syncs {master} 1\n"
        )
        self.spawn(["redis-server", str(self.conf), "--sentinel"])
        wait_for(lambda: self.client().ping(), 10, "redis-sentinel")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def primary(self) -> tuple[str, int] | None:
        """The primary this Sentinel names now."""
        found = self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER_NAME)
        return (found[0], int(found[1])) if found else None


class SentinelGroup:
    """A primary, its replicas and three Sentinels on free ports: Redis as production runs it, for
    failover tests. `url` is the deployment's REDIS_URL (`sentinel://...;sentinel://.../0`)."""

    def __init__(self, workdir: Path, replicas: int = 1, down_after_ms: int = 1000) -> None:
        self.primary = RedisServer(workdir, name="redis-primary").start()
        self.replicas = [
            RedisServer(workdir, name=f"redis-replica{i}", replica_of=self.primary.port).start()
            for i in range(replicas)
        ]
        for replica in self.replicas:
            wait_for(
                lambda r=replica: r.client().info("replication")["master_link_status"] == "up", 10, "sync"
            )
        self.sentinels = [
            RedisSentinel(workdir, self.primary.port, f"sentinel{i}", down_after_ms).start() for i in range(3)
        ]
        # Each Sentinel has found the replicas and the other Sentinels (through the primary's hello
        # channel): only then can they agree on a failover.
        wait_for(self._acquainted, 20, "sentinels that know each other and the replicas", 0.1)
        self.url = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels) + "/0"

    def _acquainted(self) -> bool:
        for sentinel in self.sentinels:
            info = _pairs(sentinel.client().execute_command("SENTINEL", "MASTER", RedisSentinel.MASTER_NAME))
            if int(info["num-other-sentinels"]) < 2 or int(info["num-slaves"]) < len(self.replicas):
                return False
        return True

    def servers(self) -> list[RedisServer]:
        return [self.primary, *self.replicas]

    def current(self) -> RedisServer:
        """The server the Sentinels name primary now (asked of the first that answers)."""
        for sentinel in self.sentinels:
            try:
                found = sentinel.primary()
            except redis.RedisError:
                continue
            for server in self.servers():
                if found and found[1] == server.port:
                    return server
        raise LookupError("no Sentinel names a primary")

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers()]:
            process.kill()


def _pairs(reply: Any) -> dict[str, str]:
    """A Sentinel's flat [field, value, ...] reply (or redis-py's dict of it) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return dict(zip(reply[::2], reply[1::2], strict=True))


class Sandbox(Process):
    """`host`: the address it listens on (a test host's link, tests/faults/netns.py)."""

    def __init__(
        self, workdir: Path, latency: float = 0.0, token: str | None = None, host: str = "127.0.0.1"
    ) -> None:
        super().__init__("sandbox", workdir)
        self.token = token
        self.port = free_port()
        self.host = host
        self.base = f"http://{host}:{self.port}"
        self.api_url = f"{self.base}/api/v17.0"
        self.latency = latency

    def start(self) -> Sandbox:
        token = ["--token", self.token] if self.token else []
        self.spawn(
            [
                sys.executable,
                "-m",
                "devtools.sandbox",
                "--host",
                self.host,
                "--port",
                str(self.port),
                *token,
                "--latency",
                str(self.latency),
            ]
        )
        wait_for(lambda: self._call("GET", "/_sandbox/health")["ok"], 10, "sandbox")
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def faults(self, *rules: dict[str, Any], latency: float | None = None) -> None:
        payload: dict[str, Any] = {"rules": list(rules)}
        if latency is not None:
            payload["latency"] = latency
        self._call("POST", "/_sandbox/faults", payload)

    def reset(self) -> None:
        self._call("POST", "/_sandbox/reset", {})

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sandbox/requests")["requests"]

    def webhooks(self, url: str, secret: str, **config: Any) -> None:
        """Post signed status webhooks to `url` for every accepted message (see devtools.sandbox)."""
        self._call("POST", "/_sandbox/webhooks", {"url": url, "secret": secret, **config})

    def webhook_log(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/webhooks")

    def inbound(self, wa_id: str, text: str, phone_number_id: str) -> str:
        """A customer writes to the business; the wamid of their message."""
        return self._call(
            "POST", "/_sandbox/inbound", {"from": wa_id, "text": text, "phone_number_id": phone_number_id}
        )["wamid"]

    def preference(self, wa_id: str, value: str, phone_number_id: str) -> None:
        """A customer stops (`stop`) or resumes (`resume`) marketing messages: Meta's
        `user_preferences` webhook."""
        self._call(
            "POST",
            "/_sandbox/user_preferences",
            {"from": wa_id, "value": value, "phone_number_id": phone_number_id},
        )

    def accepted(self) -> list[dict[str, Any]]:
        """Messages the API took: these reached the customer in real life."""
        return [r for r in self.requests() if r.get("wamid")]


class Worker(Process):
    """A celery worker; `broker_url` is the broker it reads (where `start` pings it), resolved by the
    caller the way the worker's settings resolve it. `netns`: the network namespace it runs in (a
    test host of its own, tests/faults/netns.py)."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        broker_url: str,
        name: str = "worker",
        pool: str = "threads",
        concurrency: int = 8,
        app: str = "worker",
        args: tuple[str, ...] = (),
        netns: str | None = None,
    ) -> None:
        super().__init__(name, workdir)
        self.env = env
        self.netns = netns
        self.broker_url = broker_url
        self.pool = pool
        self.concurrency = concurrency
        self.app = app
        self.args = args
        self.hostname = f"{name}-{os.getpid()}@{socket.gethostname()}"

    def start(self) -> Worker:
        hostname = self.hostname
        host = ["ip", "netns", "exec", self.netns] if self.netns else []  # it execs: the pid is celery's
        self.spawn(
            [
                *host,
                str(BIN / "celery"),
                "-A",
                self.app,
                "worker",
                "--pool",
                self.pool,
                "--concurrency",
                str(self.concurrency),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname",
                hostname,
                *self.args,
            ],
            env=self.env,
        )
        control = Celery(broker=self.broker_url).control
        try:
            wait_for(
                lambda: control.ping(destination=[hostname], timeout=0.5), 30, f"celery {self.name}", 0.1
            )
        finally:
            control.app.close()
        return self

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.output().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines


class Web(Process):
    """The web process (`python -m worker.web`, uvicorn) on a free port; `env` as a worker's."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str = "web") -> None:
        super().__init__(name, workdir)
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.webhook_url = f"{self.base}/webhooks/whatsapp"

    def start(self, wait_healthy: bool = True) -> Web:
        self.spawn([sys.executable, "-m", "worker.web"], env={**self.env, "PORT": str(self.port)})

        def answers() -> bool:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as resp:
                    return resp.status == 200
            except urllib.error.HTTPError as exc:  # 503: up, but Redis is away
                return not wait_healthy and exc.code == 503

        wait_for(answers, 30, f"web {self.name}", 0.1)
        return self


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


class Beat(Process):
    """celery beat with the project's RedBeat scheduler."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str = "beat") -> None:
        super().__init__(name, workdir)
        self.env = env
        self.workdir = workdir

    def start(self) -> Beat:
        self.spawn(
            [
                str(BIN / "celery"),
                "-A",
                "worker",
                "beat",
                "--loglevel",
                "INFO",
                "--pidfile",
                str(self.workdir / f"{self.name}.pid"),
            ],
            env=self.env,
        )
        # The banner is printed whatever the log level; the scheduler starts right after it.
        wait_for(lambda: "maxinterval" in self.output(), 30, f"celery {self.name}", 0.1)
        return self
