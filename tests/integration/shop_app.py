"""A second Celery app, standing in for an app's own worker: it serves DISPATCH_STATUS_TASK,
DISPATCH_INBOUND_TASK and DISPATCH_PAYMENT_TASK by name and keeps what it got in Redis lists for
the tests to read."""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery

app = Celery("shop", broker=os.environ["REDIS_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], worker_hijack_root_logger=False)
_redis = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)

STATUSES = "shop:statuses"
MESSAGES = "shop:messages"
PAYMENTS = "shop:payments"


@app.task(name="shop.on_status")
def on_status(status: dict[str, Any]) -> None:
    _redis.rpush(STATUSES, json.dumps(status))


@app.task(name="shop.on_message")
def on_message(message: dict[str, Any]) -> None:
    _redis.rpush(MESSAGES, json.dumps(message))


@app.task(name="shop.on_payment")
def on_payment(payment: dict[str, Any]) -> None:
    _redis.rpush(PAYMENTS, json.dumps(payment))
