"""/docs in a real browser: the web process serves Swagger UI (swagger-ui-py's files) over its
own /openapi.json; headless Chromium (the system's, driven by Playwright) renders every route,
takes an API key through "Authorize", and sends POST /v1/messages's first example from the page.
The page's answer is a 202 with a task id, and that task is the session's worker's to send. The
page asks nothing of any other host, and keeps the key out of the browser's storage.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Web, tmpdir, wait_for, worker_env
from tests.integration.conftest import Stack
from tests.integration.test_http_api import call
from worker.web.auth import key_entry

pytestmark = pytest.mark.integration

KEY = "wad_docs-page-key-6c1d"
OPERATIONS = ("sendMessage", "sendBatch", "messageStatus", "markRead")
# The flags of every headless Chromium here (the machine's network is closed): nothing of its own
# goes out either.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def web(stack: Stack) -> Iterator[Web]:
    env = worker_env(
        stack.redis.url,
        stack.sandbox.api_url,
        DISPATCH_API_KEYS=key_entry("docs", KEY),
        DISPATCH_WEBHOOK_SECRET="docs-page-webhook-secret",
    )
    process = Web(tmpdir("wa-docs-"), env, name="web-docs").start()
    yield process
    process.stop()


def test_the_docs_page_renders_and_sends_an_example_request(web: Web, stack: Stack) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (make test installs Debian's package)")
    playwright = pytest.importorskip("playwright.sync_api")
    requested: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(tmpdir("wa-chrome-")),  # a fresh --user-data-dir
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(web.base + "/docs")
            for operation in OPERATIONS:  # Swagger UI read the 3.1 document and drew every route
                page.wait_for_selector(f"#operations-default-{operation}", timeout=30_000)

            page.click("button.authorize")
            page.fill(".auth-container input", KEY)
            page.click(".auth-btn-wrapper button.authorize")
            page.click(".auth-btn-wrapper button.btn-done")

            operation = page.locator("#operations-default-sendMessage")
            operation.locator(".opblock-summary").first.click()
            try_it = operation.locator("button.try-out__btn")
            if try_it.inner_text().strip() == "Try it out":  # tryItOutEnabled opens it already
                try_it.click()
            body = operation.locator("textarea.body-param__text")
            assert json.loads(body.input_value())["type"] == "text"  # the first example: text
            operation.locator("button.execute").click()
            live = operation.locator(".live-responses-table .response")
            live.locator(".response-col_status").first.wait_for(timeout=30_000)
            shown_status = live.locator(".response-col_status").first.inner_text().strip()
            shown_body = live.locator(".response-col_description pre").first.inner_text()
            storage = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
            shots = os.environ.get("ARTIFACTS")
            if shots:
                page.screenshot(path=str(Path(shots) / "docs-page.png"), full_page=True)
        finally:
            browser.close()

    assert shown_status == "202", (shown_status, shown_body)
    accepted = json.loads(shown_body)
    task_id = accepted["task_id"]
    assert accepted["status_url"] == f"/v1/messages/{task_id}"
    assert KEY not in storage  # persistAuthorization false: the key lived in the page only
    foreign = [url for url in requested if not url.startswith(web.base + "/")]
    assert not foreign, foreign  # no CDN, no validator.swagger.io
    assert web.base + "/docs/static/swagger-ui-bundle.js" in requested

    # The task the page enqueued exists, and the session's worker sends it.
    status, data, _ = call(web.base, "GET", f"/v1/messages/{task_id}", key=KEY)
    assert status == 200 and data["task_id"] == task_id

    def sent() -> dict | None:
        data = call(web.base, "GET", f"/v1/messages/{task_id}", key=KEY)[1]
        return data if data["state"] == "SUCCESS" else None

    assert wait_for(sent, 30, "the page's message sent")["wamid"].startswith("wamid.")
