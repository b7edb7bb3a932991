"""Point the project's Celery app at a private Redis before anything imports it.

The port is chosen now (importing anything from `worker` creates the app, so this comes first);
the integration fixtures start a redis-server on it. The test process plays the role of an app:
it has the broker URL and no API credentials.
"""

import os
import socket

for name in [k for k in os.environ if k.startswith(("INTERAKT_", "DISPATCH_", "CELERY_"))]:
    del os.environ[name]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
