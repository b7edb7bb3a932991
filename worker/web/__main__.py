"""`python -m worker.web`: uvicorn on $PORT (default 8000), without access logs.

Access logs stay off because Meta's handshake carries the verify token in its query string;
the routes log what matters (masked) themselves.
"""

from __future__ import annotations

import os
import sys

import uvicorn

from worker.ops import logs
from worker.settings import get_settings
from worker.web.app import create_app


def main() -> None:
    settings = get_settings()
    logs.configure()
    if not settings.webhook_secrets:
        sys.exit("DISPATCH_WEBHOOK_SECRET is not set: every webhook would be refused; set it and start again")
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8000")),
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
