"""`wa-dispatch`: the operator's command line (typer + rich).

Each command prints for a person (tables on stdout, progress on stderr); with `--json` it prints one
JSON document on stdout instead, and nothing else there. Logs go to stderr, warnings and above
unless DISPATCH_LOG_LEVEL says otherwise.

One module per command group, each registering its commands on the root app of `base` as it is
imported: messages (`send`, `status`), operations (`pause`, `resume`, `breaker`, `health`,
`flower`), failed, campaigns (`campaign`, `optout`), templates, media, senders (`senders`,
`api-key`), customers (`forget`). A command imports the worker's parts it needs when it runs,
so `--help` stays fast.
"""

from __future__ import annotations

from producers.cli import campaigns, customers, failed, media, messages, operations, senders, templates
from producers.cli.base import app

__all__ = [
    "app",
    "campaigns",
    "customers",
    "failed",
    "main",
    "media",
    "messages",
    "operations",
    "senders",
    "templates",
]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
