"""The naive baseline the benchmark compares against: a plain `requests.post` per task, no session
reuse, no idempotency or rate limiting, default prefork pool. Not for production."""

import os

import requests
from celery import Celery

app = Celery("naive", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(task_default_queue="naive", result_extended=True, worker_hijack_root_logger=False)


@app.task(name="bench.naive.send")
def send(payload: dict) -> dict:
    resp = requests.post(
        f"{os.environ['INTERAKT_API_URL']}/{os.environ['INTERAKT_PHONE_NUMBER_ID']}/messages",
        json=payload,
        headers={
            "x-access-token": os.environ["INTERAKT_ACCESS_TOKEN"],
            "x-waba-id": os.environ["INTERAKT_WABA_ID"],
        },
        timeout=20,
    )
    resp.raise_for_status()
    return {"wamid": resp.json()["messages"][0]["id"]}
