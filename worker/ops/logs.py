"""structlog JSON lines for the worker and for Celery's own records, with secrets and phone numbers masked.

Masking happens in the processor chain, so no call site can forget it: keys that name a
secret are dropped to "[redacted]", the configured token is scrubbed from every string,
and anything that looks like a phone number keeps only its country prefix and last four digits.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

from worker.settings import get_settings

# E.164 (+ and 8-15 digits) or a bare wa_id of 10-15 digits; not digits inside ids or decimals.
_PHONE = re.compile(r"(?<![\w.+-])(?:\+\d{8,15}|\d{10,15})(?![\w.])")
_SECRET_KEYS = ("token", "secret", "password", "authorization")
_IDS = frozenset({"wamid", "task_id", "timestamp", "fbtrace_id"})  # opaque ids that may hold digit runs


def mask_phone(number: str) -> str:
    """'+919999595313' -> '+91******5313': enough to tell recipients apart, not enough to call them."""
    digits = re.sub(r"\D", "", number)
    if len(digits) < 8:
        return "*" * len(digits)
    return f"+{digits[:2]}{'*' * (len(digits) - 6)}{digits[-4:]}"


def mask_text(text: str) -> str:
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


_SECRETS: set[str] = set()  # every sender's token, registered where the senders are built


def register_secret(value: str) -> None:
    """A value that must never leave the process in a log record."""
    if value:
        _SECRETS.add(value)


def _scrub(value: Any, tokens: frozenset[str]) -> Any:
    if isinstance(value, str):
        for token in tokens:
            if token in value:
                value = value.replace(token, "[redacted]")
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _scrub_item(k, v, tokens) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, tokens) for v in value]
    return value


@functools.lru_cache(maxsize=4096)
def _names_a_secret(key: str) -> bool:
    """Asked for every key of every record: remembered (a record's keys come from a small set)."""
    lowered = key.lower()
    return any(s in lowered for s in _SECRET_KEYS)


def _scrub_item(key: str, value: Any, tokens: frozenset[str]) -> Any:
    if _names_a_secret(str(key)):
        return "[redacted]"
    if key in _IDS:
        return value
    return _scrub(value, tokens)


def _tokens() -> frozenset[str]:
    """Every registered token and the configured one, built again only when either changed."""
    global _token_cache
    secret = get_settings().access_token
    value = secret.get_secret_value() if secret else ""
    key, tokens = _token_cache
    if key != (value, len(_SECRETS)):  # _SECRETS only grows
        registered = frozenset(_SECRETS)  # one snapshot: the key below counts what it holds
        tokens = registered | ({value} if value else set())
        _token_cache = ((value, len(registered)), tokens)  # one assignment: a reader sees old or new
    return tokens


_token_cache: tuple[tuple[str, int], frozenset[str]] = (("", -1), frozenset())


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: the last line of defence before a record leaves the process."""
    tokens = _tokens()
    return {k: _scrub_item(k, v, tokens) for k, v in event.items()}


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class JsonLinesHandler(logging.StreamHandler):
    """Renders a record before taking the stream's lock, which then covers only the write.

    logging.Handler holds its lock through `format`, and rendering a line (masking, JSON) is the
    slow part: with the pool's threads logging, Celery's consumer thread queued behind them on that
    lock and took messages off the queue slower than one number's rate (docs/architecture.md,
    "Cost per message, by design")."""

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            line = self.format(record) + self.terminator
            self.acquire()
            try:
                self.stream.write(line)
                self.stream.flush()
            finally:
                self.release()
        except Exception:  # noqa: BLE001 - as logging's own handlers: report, never break the caller
            self.handleError(record)
        return True


CELERY_PER_TASK = ("celery.worker.strategy", "celery.app.trace")


def configure(level: str | None = None) -> None:
    """Route structlog and stdlib logging (Celery's included) to one JSON-lines stream on stderr."""
    level = (level or get_settings().log_level).upper()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
    )
    handler = JsonLinesHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Celery's own line per task received, succeeded or retried repeats what the `attempt` and
    # `outcome` lines say with the task id; three more renders per message, on the consumer's
    # thread too. Failures still come at WARNING and above; DEBUG brings the lines back.
    for name in CELERY_PER_TASK:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")


def get_logger(name: str = "whatsapp_dispatch") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
