"""`make run`: the whole pipeline on a fresh machine, one message of each type, each wamid or failure shown.

Starts what is missing: a redis-server when none answers at REDIS_URL (local URLs only), the
sandbox API when INTERAKT_ACCESS_TOKEN is not set (and says so loudly), and a celery worker.
With real credentials it sends for real, to DEMO_TO, which must then be set. In sandbox mode it
also starts the web process, and the sandbox posts signed status webhooks to it: a second
table shows each message's delivery status arriving.
"""

from __future__ import annotations

import atexit
import os
import secrets
import signal
import sys
import time
from typing import Any, TypeVar
from urllib.parse import urlparse

import redis
from celery.result import AsyncResult
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

import producers
from devtools.localstack import Process, RedisServer, Sandbox, Web, Worker, tmpdir
from worker.ops import logs
from worker.settings import get_settings

console = Console()
WAMID = "wamid.HBgMOTE5OTk5NTk1MzEzFQIAERgSQUMwM0Y5RjNE"
_started: list[Process] = []
P = TypeVar("P", RedisServer, Sandbox, Worker, Web)
# The sandbox posts read about 3 s after a send (its default pace); this leaves room for a slow machine.
STATUS_WAIT = 20.0


@atexit.register
def _stop_started() -> None:
    for process in reversed(_started):
        process.stop()


def _exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM or SIGHUP end the demo through sys.exit, so the atexit clean-up above runs."""
    sys.exit(128 + signum)


def start(process: P) -> P:
    """Register before starting: a process that fails to come up is stopped with the rest."""
    _started.append(process)
    return process.start()


def ensure_redis(url: str) -> None:
    parsed = urlparse(url)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        console.print(f"Redis answers at {parsed.hostname}:{parsed.port or 6379}")
        return
    except redis.RedisError:
        pass
    if parsed.hostname not in ("localhost", "127.0.0.1", "::1"):
        sys.exit(f"No Redis answers at {parsed.hostname}:{parsed.port}; start it or set REDIS_URL")
    console.print(f"No Redis at port {parsed.port or 6379}: starting a private redis-server there")
    start(RedisServer(tmpdir("wa-run-"), parsed.port or 6379))


def start_sandbox() -> dict[str, str]:
    sandbox = start(Sandbox(tmpdir("wa-run-")))
    console.print(
        Panel.fit(
            "[bold yellow]SANDBOX MODE[/]: INTERAKT_ACCESS_TOKEN is not set, so messages go to a local\n"
            f"Interakt-compatible sandbox at {sandbox.api_url}. Nothing is sent to WhatsApp.\n"
            "Set INTERAKT_ACCESS_TOKEN, INTERAKT_WABA_ID, INTERAKT_PHONE_NUMBER_ID and DEMO_TO\n"
            "to send for real.",
            border_style="yellow",
        )
    )
    env = {
        "INTERAKT_API_URL": sandbox.api_url,
        "INTERAKT_ACCESS_TOKEN": "sandbox-token",
        "INTERAKT_WABA_ID": "sandbox-waba",
        "INTERAKT_PHONE_NUMBER_ID": "sandbox-phone-number-id",
    }
    secret = secrets.token_hex(16)
    web = start(Web(tmpdir("wa-run-"), {**os.environ, **env, "DISPATCH_WEBHOOK_SECRET": secret}))
    sandbox.webhooks(web.webhook_url, secret)
    console.print(f"Webhook receiver at {web.webhook_url}; the sandbox posts signed statuses to it")
    return env


def settled(result: AsyncResult, timeout: float) -> dict[str, Any]:
    """The task's value once its result is stored, read from the stored result (not from the
    result channel, whose message a just-started subscriber can miss under load)."""
    deadline = time.monotonic() + timeout
    while not result.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result after {timeout:g}s")
        time.sleep(0.1)
    return result.get(timeout=1)


def show_statuses(results: dict[str, AsyncResult]) -> None:
    """Each sent message's delivery status, once all are read (or STATUS_WAIT has passed)."""
    sent = {label: r.id for label, r in results.items() if r.successful() and r.result.get("wamid")}
    deadline = time.monotonic() + STATUS_WAIT
    while True:
        rows = {label: producers.delivery_status(task_id) for label, task_id in sent.items()}
        if all(r["delivery_status"] == "read" for r in rows.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    table = Table(title="Delivery statuses, from the sandbox's signed webhooks")
    table.add_column("message")
    table.add_column("wamid", overflow="fold")
    table.add_column("delivery status")
    for label, row in rows.items():
        table.add_row(label, row["wamid"], row["delivery_status"])
    console.print(table)


def one_of_each(to: str) -> dict[str, AsyncResult]:
    return {
        "text": producers.send_text(to, "Hello from whatsapp-dispatch"),
        "reply": producers.send_text(to, "A reply", reply_to=WAMID),
        "image": producers.send_image(
            to, link="https://www.w3.org/Graphics/PNG/nurbcup2si.png", caption="A cup"
        ),
        "video": producers.send_video(to, link="https://www.w3schools.com/html/mov_bbb.mp4"),
        "audio": producers.send_audio(to, link="https://www.w3schools.com/html/horse.mp3"),
        "document": producers.send_document(
            to,
            link="https://www.w3.org/WAI/ER/tests/xhtml/testfiles/resources/pdf/dummy.pdf",
            filename="dummy.pdf",
        ),
        "sticker": producers.send_sticker(to, link="https://www.gstatic.com/webp/gallery/1.webp"),
        "location": producers.send_location(to, 19.0760, 72.8777, name="Gateway", address="Mumbai"),
        "contacts": producers.send_contacts(
            to,
            [
                {
                    "name": {"formatted_name": "Asha Rao", "first_name": "Asha"},
                    "phones": [{"phone": "+919876543210", "type": "WORK"}],
                }
            ],
        ),
        "reaction": producers.send_reaction(to, WAMID, "\U0001f44d"),
        "buttons": producers.send_buttons(to, "Confirm your slot?", {"yes": "Yes", "no": "No"}),
        "list": producers.send_list(
            to,
            "Pick a dish",
            "Menu",
            [{"title": "Mains", "rows": [{"id": "biryani", "title": "Biryani", "description": "Spicy"}]}],
        ),
        "product": producers.send_product(to, "CATALOG_ID", "ID_TEST_ITEM_1", body="Our pick for you"),
        "product_list": producers.send_product_list(
            to, "CATALOG_ID", {"Best sellers": ["sku-1", "sku-2"]}, header="Deals", body="This week only"
        ),
        "catalog": producers.send_catalog(to, "Browse our catalog", "2lc20305pt"),
        "template": producers.send_template(to, "hello_world", "en_US"),
        "otp": producers.send_otp(to, "login_copy_code", "482913"),
        **newer_kinds(to),
        "mark_read": producers.mark_read(WAMID),
    }


def newer_kinds(to: str) -> dict[str, AsyncResult]:
    """Payments in chat, a Flow, a CTA button, location and address requests and a carousel."""
    bread = {"retailer_id": "sku-bread-01", "name": "Sourdough", "amount": _paise(25000), "quantity": 2}
    upi = [{"type": "payment_gateway", "payment_gateway": {"type": "razorpay", "configuration_name": "shop"}}]
    card = {"display_text": "Shop", "url": "https://shop.example/sale", "body": "New in"}
    image = "https://www.w3.org/Graphics/PNG/nurbcup2si.png"
    return {
        "order_details": producers.send_order_details(
            to, "Your order, ready to pay", "order-2026-0042", [bread], upi, tax=2500
        ),
        "order_status": producers.send_order_status(to, "order-2026-0042", "shipped", "On its way"),
        "flow": producers.send_flow(
            to,
            "Tell us about your return",
            "Start",
            flow_id="1191874388643027",
            screen="RETURN",
            mode="draft",
        ),
        "cta_url": producers.send_cta_url(to, "Track your parcel", "Track", "https://shop.example/t/42"),
        "location_request": producers.send_location_request(to, "Where should we deliver?"),
        "address_request": producers.send_address_request(to, "Your delivery address, please"),
        "carousel": producers.send_carousel(to, "This week", [{**card, "image": image}] * 2),
    }


def _paise(value: int) -> dict[str, int]:
    return {"value": value, "offset": 100}


def main() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    settings = get_settings()
    logs.configure("WARNING")  # the table below is the output; the worker logs its own JSON
    ensure_redis(settings.celery_broker_url)
    env = dict(os.environ)
    if settings.access_token:
        to = os.environ.get("DEMO_TO")
        if not to:
            sys.exit(
                "Real credentials are set: name the recipient of the demo messages with DEMO_TO=+<number>"
            )
        console.print(f"[bold red]LIVE[/]: sending through {settings.api_url} to {to}")
    else:
        to = "+919999595313"
        env.update(start_sandbox())
    worker = start(Worker(tmpdir("wa-run-"), env, settings.celery_broker_url, name="demo"))
    console.print(f"Worker {worker.hostname} is up (log: {worker.log_path})")

    table = Table(title="One message of each type")
    table.add_column("message")
    table.add_column("task id", no_wrap=True)
    table.add_column("state")
    table.add_column("wamid or failure", overflow="fold")
    failures = 0
    results = one_of_each(to)
    for label, result in results.items():
        try:
            outcome = settled(result, timeout=60)
            detail = outcome.get("wamid") or f"success={outcome.get('success')}"
        except Exception as exc:  # noqa: BLE001 - each failure is shown, not raised
            failures += 1
            detail = f"[red]{type(exc).__name__}: {exc}[/]"
        table.add_row(label, result.id, result.state, detail)
    console.print(table)
    if not settings.access_token:
        show_statuses(results)
    if failures and not settings.access_token:
        sys.exit(1)


if __name__ == "__main__":
    main()
