"""Point the project's Celery app at a private Redis before anything imports it.

The port is chosen now (importing anything from `worker` creates the app, so this comes first);
`redis_server` starts one redis-server on it for the whole run, shared by the in-process tier and
the integration stack. The test process plays the role of an app: it has the broker URL and no
API credentials.
"""

import os
import socket
from collections.abc import Iterator

import pytest

for name in [k for k in os.environ if k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))]:
    del os.environ[name]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{s.getsockname()[1]}/0"

from devtools.localstack import RedisServer, tmpdir  # noqa: E402 - after REDIS_URL is set


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    port = int(os.environ["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    server = RedisServer(tmpdir("wa-redis-"), port).start()
    yield server
    server.stop()
