"""`python -m worker.web`: uvicorn on $PORT (default 8000), without access logs. It starts when
webhook secrets or API keys are set (webhooks without a secret refuse every POST).

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
from worker.web.auth import ApiKeysError, load_keys


def main() -> None:
    settings = get_settings()
    logs.configure()
    try:
        keys = load_keys(settings)
    except ApiKeysError as exc:
        sys.exit(f"DISPATCH_API_KEYS: {exc}")
    if not settings.webhook_secrets and not keys:
        sys.exit(
            "neither DISPATCH_WEBHOOK_SECRET nor DISPATCH_API_KEYS (or DISPATCH_API_KEYS_FILE) is set: "
            "every request would be refused; set one and start again"
        )
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
