"""Which keys hear an event (`Routes`), and the thread that POSTs what is due (`Dispatcher`).

A status goes to the callback of the API key its task was enqueued with (the web process records
it as `wa:api:key:<task id>`, beside the sender); an inbound message goes to every key with a
callback that may use the sender it came to. A POST is refused before it is made when the URL's
host is not public (the media fetch's rule, worker.delivery.media; DISPATCH_CALLBACK_ALLOW_HOSTS
exempts hosts). A 2xx answer delivers; anything else (an error, a timeout, a refused host) is
tried again after tenacity's `wait_exponential_jitter` (DISPATCH_CALLBACK_BACKOFF doubling up to
DISPATCH_CALLBACK_MAX_WAIT) until DISPATCH_CALLBACK_MAX_AGE after the first attempt, and then
kept as a dead letter. The POSTs run on a pool of DISPATCH_CALLBACK_THREADS threads of their own,
so a slow receiver holds up only other callbacks.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlparse

import redis
import urllib3
from redis.exceptions import RedisError
from tenacity import RetryCallState
from tenacity.wait import wait_exponential_jitter

from worker.callbacks.config import Callback
from worker.callbacks.outbox import Outbox, Pending
from worker.callbacks.signing import HEADER, sign
from worker.delivery.errors import DispatchError
from worker.delivery.media import _pool, resolve_address
from worker.ops.logs import get_logger
from worker.settings import Settings

log = get_logger("whatsapp_dispatch.callbacks")

KEY_PREFIX = "wa:api:key:"  # task id -> the API key name it was enqueued with (worker.web.enqueue)
POLL = 1.0  # seconds between looks at the due-set when nothing was due
LEASE_MARGIN = 30.0  # a take outlives the longest POST by this much


@dataclass(frozen=True)
class Routes:
    """The keys with a callback, and the senders each may use (None: every sender)."""

    outbox: Outbox
    keys: dict[str, frozenset[str] | None]

    def of_tasks(self, task_ids: list[str]) -> list[str | None]:
        """The key with a callback each task was enqueued with (None: none, or not over HTTP)."""
        if not task_ids or not self.keys:
            return [None] * len(task_ids)
        names = cast(list[str | None], self.outbox.redis.mget([KEY_PREFIX + t for t in task_ids]))
        return [n if n in self.keys else None for n in names]

    def of_sender(self, sender: str) -> list[str]:
        return sorted(k for k, senders in self.keys.items() if senders is None or sender in senders)


class CallbackFailed(Exception):
    """An attempt that did not deliver; the message says why (never a secret)."""


def post(callback: Callback, body: bytes, allow_hosts: frozenset[str], timeout: urllib3.Timeout) -> None:
    """POST one signed body; CallbackFailed unless the receiver answered 2xx."""
    try:
        address, port = resolve_address(callback.url, allow_hosts)
    except DispatchError as exc:
        reason = exc.message.split(" not fetched: ", 1)[-1]
        raise CallbackFailed(
            reason.replace("DISPATCH_MEDIA_ALLOW_HOSTS", "DISPATCH_CALLBACK_ALLOW_HOSTS")
        ) from None
    parts = urlparse(callback.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": "whatsapp-dispatch-callbacks",
        HEADER: sign(callback.secret.get_secret_value().encode(), body, int(time.time())),
    }
    pool = _pool(callback.url, address, port, timeout)
    try:
        resp = pool.urlopen("POST", path, body=body, headers=headers, redirect=False, retries=False)
    except urllib3.exceptions.HTTPError as exc:
        raise CallbackFailed(f"{type(exc).__name__}: {exc}") from None
    finally:
        pool.close()
    if not 200 <= resp.status < 300:
        raise CallbackFailed(f"HTTP {resp.status}")


class Dispatcher:
    def __init__(self, outbox: Outbox, callbacks: dict[str, Callback], settings: Settings) -> None:
        self.outbox = outbox
        self.callbacks = callbacks
        self.settings = settings
        self.timeout = urllib3.Timeout(connect=settings.connect_timeout, read=settings.callback_timeout)
        self.lease = settings.connect_timeout + settings.callback_timeout + LEASE_MARGIN
        self.wait = wait_exponential_jitter(
            initial=settings.callback_backoff,
            max=settings.callback_max_wait,
            jitter=settings.callback_backoff,
        )

    def next_wait(self, attempts: int) -> float:
        """Seconds before the next attempt, after `attempts` failed ones (tenacity's schedule)."""
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempts
        return float(self.wait(state))

    def attempt(self, pending: Pending) -> bool:
        """One POST of one entry, and what follows from it; True when delivered."""
        callback = self.callbacks.get(pending.key)
        try:
            if callback is None:
                raise CallbackFailed(f"API key {pending.key!r} has no callback in DISPATCH_CALLBACKS_FILE")
            post(callback, pending.body.encode(), self.settings.callback_allowed_hosts, self.timeout)
        except CallbackFailed as exc:
            error, now = str(exc), time.time()
            attempts = pending.attempts + 1
            at = now + self.next_wait(attempts)
            context = {"key": pending.key, "entry": pending.entry_id, "attempts": attempts, "error": error}
            if at - pending.first > self.settings.callback_max_age:
                self.outbox.bury(pending.entry_id, error, now)
                log.error("callback_dead", **context)
            else:
                self.outbox.again(pending.entry_id, at, error)
                log.warning("callback_failed", retry_in=round(at - now, 1), **context)
            return False
        self.outbox.delivered(pending.entry_id)
        log.info("callback_delivered", key=pending.key, entry=pending.entry_id, attempts=pending.attempts + 1)
        return True

    def drain(self, stop: threading.Event) -> None:
        """Run until `stop` is set: take what is due, as many as there are free threads."""
        threads = self.settings.callback_threads
        free = threading.Semaphore(threads)

        def run(pending: Pending) -> None:
            try:
                self.attempt(pending)
            except Exception:  # Redis away mid-way: the lease ends and the entry is due again
                log.exception("callback_attempt_error", entry=pending.entry_id)
            finally:
                free.release()

        with ThreadPoolExecutor(threads, thread_name_prefix="callback") as pool:
            while not stop.is_set():
                try:
                    started = 0
                    for entry_id in self.outbox.due(time.time(), 4 * threads):
                        if not free.acquire(blocking=False):
                            break
                        pending = self.outbox.take(entry_id, self.lease)
                        if pending is None:
                            free.release()
                            continue
                        pool.submit(run, pending)
                        started += 1
                    stop.wait(0.05 if started else POLL)
                except RedisError as exc:
                    log.warning("callback_outbox_unavailable", error=str(exc))
                    stop.wait(1.0)


def routes(client: redis.Redis, settings: Settings, callbacks: dict[str, Callback], keys: Any) -> Routes:
    """The routes of the keys that have a callback (`keys`: worker.web.auth's ApiKey list)."""
    senders = {k.name: k.senders for k in keys}
    outbox = Outbox(client, int(settings.callback_max_age) + settings.dead_letter_ttl)
    return Routes(outbox, {name: senders.get(name) for name in callbacks})
