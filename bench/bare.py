"""The ceiling Celery itself sets for the single-intent path: a task that only sleeps the API's
latency and returns a small dict, with the project's broker, result backend, acks-late, prefetch
and threads pool, and no guarantees at all. Not for production."""

import os
import time

from celery import Celery

app = Celery("bare", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(
    task_default_queue="bare",
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
)
LATENCY = float(os.environ.get("BENCH_LATENCY", "0.05"))


@app.task(name="bench.bare.send")
def send(i: int) -> dict:
    time.sleep(LATENCY)
    return {"wamid": f"wamid.bare.{i}", "attempts": 1}
