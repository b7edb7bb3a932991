"""The naive webhook baseline the webhook bench compares against: a Flask-style synchronous view
(run in the server's thread pool) that verifies the signature and enqueues one Celery task per
event, and a task that applies it with the same order-safe Lua script. Not for production.

    uvicorn bench.naive_webhook:web        celery -A bench.naive_webhook worker -Q naive_webhook
"""

import json
import os
import time

import redis
from celery import Celery
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from worker.statuses.events import DeliveryStatus, StatusEvent, parse
from worker.statuses.signature import HEADER, verify
from worker.statuses.tracker import StatusStore

URL = os.environ["REDIS_URL"]
SECRETS = [s.encode() for s in os.environ["DISPATCH_WEBHOOK_SECRET"].split(",")]
app = Celery("naive_webhook", broker=URL)
app.conf.update(task_default_queue="naive_webhook", worker_hijack_root_logger=False, task_ignore_result=True)
store = StatusStore(redis.Redis.from_url(URL, decode_responses=True), 86400)


@app.task(name="bench.naive_webhook.apply_status")
def apply_status(event: dict) -> None:
    store.apply([StatusEvent(**{**event, "status": DeliveryStatus(event["status"])})])


def receive(body: bytes, signature: str | None) -> JSONResponse:
    if not verify(body, signature, SECRETS):
        return JSONResponse({"error": "signature"}, status_code=401)
    for event in parse(json.loads(body), time.time()).statuses:
        apply_status.delay(event.as_dict())
    return JSONResponse({"ok": True})


async def view(request: Request) -> JSONResponse:
    body = await request.body()
    # The synchronous part runs in a worker thread, as a Flask view under a threaded server would.
    return await run_in_threadpool(receive, body, request.headers.get(HEADER))


web = Starlette(routes=[Route("/webhooks/whatsapp", view, methods=["POST"])])
