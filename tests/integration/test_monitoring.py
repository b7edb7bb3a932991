"""A real worker's /metrics as Prometheus scrapes it: a message enqueued through the producers
shows in the enqueue histograms (its wa_enqueued_at header read by the task in the worker
process), an OpenMetrics scrape carries its task id as the exemplar, and the shared state read
from Redis (breaker, workers, heartbeat, dead letters) is served."""

from __future__ import annotations

import re
import time
import urllib.request

import producers
from tests import spec_examples as spec
from tests.harness import Sandbox
from tests.integration.conftest import Stack


def scrape(port: int, openmetrics: bool = False) -> str:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if openmetrics:
        request.add_header("Accept", "application/openmetrics-text; version=1.0.0")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.read().decode()


def value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


def test_a_sent_message_is_timed_from_its_enqueue_and_its_task_id_is_the_exemplar(
    stack: Stack, api: Sandbox
) -> None:
    before = value(
        scrape(stack.metrics_port), 'wa_enqueue_to_wamid_seconds_count{sender="default",type="text"}'
    )
    enqueued = time.time()
    result = producers.send_text(spec.TO, "monitoring")
    result.get(timeout=30)
    took = time.time() - enqueued

    text = scrape(stack.metrics_port)
    for name in ("wa_enqueue_to_first_attempt_seconds", "wa_enqueue_to_wamid_seconds"):
        count = value(text, f'{name}_count{{sender="default",type="text"}}')
        assert count is not None and count >= (before or 0) + 1, name
        total = value(text, f'{name}_sum{{sender="default",type="text"}}')
        assert total is not None and total > 0
    # The bucket this message fell in names it (OpenMetrics only: the text format has no exemplars).
    exemplars = re.findall(
        r'^wa_enqueue_to_wamid_seconds_bucket\{[^}]*\} \S+ # \{task_id="([^"]+)"\} (\S+)',
        scrape(stack.metrics_port, openmetrics=True),
        re.MULTILINE,
    )
    assert result.id in {task_id for task_id, _ in exemplars}
    [observed] = [float(v) for task_id, v in exemplars if task_id == result.id]
    assert 0 < observed <= took


def test_the_shared_state_is_served_from_redis(stack: Stack, api: Sandbox) -> None:
    text = scrape(stack.metrics_port)
    assert value(text, 'wa_breaker_open{sender="default"}') == 0.0
    assert (value(text, "wa_workers_alive") or 0) >= 1
    beat = value(text, "wa_worker_heartbeat_timestamp_seconds")
    assert beat is not None and time.time() - beat < 30
    assert value(text, "wa_dead_letters") is not None
    assert value(text, 'wa_parked_line_seconds{sender="default"}') is not None
