"""Templates and media with a real worker, the sandbox process and `wa-dispatch` as a user runs it:
a sync across pages, a campaign refused by the worker before any send, a 132000 that re-syncs the
template, beat's periodic re-sync, and a 1,000-recipient campaign that uploads its image once.

Its own sandbox, worker and Redis database, because the worker here may fetch media from
127.0.0.1 (DISPATCH_MEDIA_ALLOW_HOSTS), which the shared stack's worker refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.localstack import RedisServer
from devtools.sandbox import EXAMPLE_TEMPLATES
from tests import spec_examples as spec
from tests.harness import Beat, Sandbox, Worker, tmpdir, wa_dispatch, wait_for, worker_env
from tests.media_server import PNG, MediaServer, media_server

pytestmark = pytest.mark.integration

RECIPIENTS = 1000


@dataclass
class Rig:
    env: dict[str, str]
    sandbox: Sandbox
    worker: Worker
    workdir: Path
    files: MediaServer

    def cli(self, *args: str, code: int = 0) -> Any:
        return wa_dispatch(self.env, *args, code=code)

    def messages(self) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.requests() if r.get("body") and "route" not in r]

    def set_templates(self, templates: list[dict[str, Any]]) -> None:
        self.sandbox._call("POST", "/_sandbox/templates", {"templates": templates})


@pytest.fixture(scope="module")
def rig(redis_server: RedisServer) -> Iterator[Rig]:
    workdir = tmpdir("wa-tm-")
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/3"
    sandbox = Sandbox(workdir).start()
    with media_server() as files:
        env = worker_env(
            redis_url,
            sandbox.api_url,
            DISPATCH_MEDIA_ALLOW_HOSTS="127.0.0.1",
        )
        worker = Worker(workdir, env, redis_url, name="worker-tm").start()
        try:
            yield Rig(env, sandbox, worker, workdir, files)
        finally:
            worker.stop()
            sandbox.stop()


def template_campaign(folder: Path, name: str, params: int) -> Path:
    parameters = ", ".join('{ type = "text", text = "{first_name}" }' for _ in range(params))
    (folder / f"{name}.csv").write_text("phone,first_name\n+919876500201,Asha\n+919876500202,Ravi\n")
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[schedule]\nevery = 86400\n[audience]\ncsv = "{name}.csv"\n'
        '[message]\ntype = "template"\n'
        'template = { name = "order_update", language = { code = "en_US" }, '
        f'components = [{{ type = "body", parameters = [{parameters}] }}] }}\n'
    )
    return path


def test_a_campaign_that_does_not_fit_its_template_is_refused_before_any_send(
    rig: Rig, tmp_path: Path
) -> None:
    rig.sandbox.reset()
    bulk = {"type": "BODY", "text": "Hi {{1}}"}
    rig.set_templates(
        [
            {"name": f"bulk_{i}", "language": "en_US", "status": "APPROVED", "components": [bulk]}
            for i in range(150)
        ]
    )
    wrong = template_campaign(tmp_path, "wrong-count", params=2)
    assert rig.cli("campaign", "load", str(wrong)) == [
        {"name": "wrong-count", "recipients": 2}
    ]  # no registry yet

    synced = rig.cli("templates", "sync")
    assert synced["pages"] == 2 and synced["templates"] == 150 + len(EXAMPLE_TEMPLATES)
    listed = rig.cli("templates", "list")["templates"]
    assert {"name": "summer_sale", "language": "en_US", "status": "PAUSED"}.items() <= next(
        t for t in listed if t["name"] == "summer_sale"
    ).items()
    [shown] = rig.cli("templates", "show", "order_update")
    assert shown["components"] == [{"type": "BODY", "text": "Hi {{1}}, your order has shipped."}]
    assert "no template 'nope'" in rig.cli("templates", "show", "nope", code=1)["error"]

    for command in ("validate", "preview"):
        refused = rig.cli("campaign", command, str(wrong), code=1)
        assert "template.components.0: body: expected 1 parameter ({{1}}), given 2" in refused["error"]
    ran = rig.cli("campaign", "run", "wrong-count", "--run-id", "r1", code=1)  # refused by the worker
    assert ran["kind"] == "invalid" and "given 2" in ran["error"]
    assert rig.messages() == []

    intent = tmp_path / "intent.json"
    intent.write_text(
        json.dumps(
            {
                "to": "+919876500201",
                "type": "template",
                "template": {"name": "summer_sale", "language": {"code": "en_US"}},
            }
        )
    )
    paused = rig.cli("send", "-f", str(intent), code=2)  # refused at enqueue
    assert paused["errors"] == [
        {"field": "template.name", "reason": "template summer_sale:en_US is PAUSED, not APPROVED"}
    ]
    assert rig.messages() == []

    right = template_campaign(tmp_path, "right-count", params=1)
    assert rig.cli("campaign", "validate", str(right))[0]["recipients"] == 2
    assert rig.cli("campaign", "run", str(right), "--run-id", "r1")["sent"] == 2


def test_a_132000_marks_the_template_stale_and_the_worker_resyncs_it(rig: Rig, tmp_path: Path) -> None:
    rig.sandbox.reset()
    rig.cli("templates", "sync")
    two = {"type": "BODY", "text": "Hi {{1}}, order {{2}} has shipped."}
    rig.set_templates(
        [{"name": "order_update", "language": "en_US", "status": "APPROVED", "components": [two]}]
    )  # edited at Meta's
    body = {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Asha"}]}],
    }
    intent = tmp_path / "intent.json"
    intent.write_text(json.dumps({"to": "+919876500203", "type": "template", "template": body}))
    failed = rig.cli("send", "-f", str(intent), code=1)
    assert failed["code"] == 132000 and failed["kind"] == "permanent"

    def resynced() -> bool:
        shown = rig.cli("templates", "show", "order_update")
        return any(c.get("text") == two["text"] for t in shown for c in t["components"])

    wait_for(resynced, 30, "the worker's re-sync of order_update", 0.5)
    assert not any(t["stale"] for t in rig.cli("templates", "list")["templates"])
    refused = rig.cli("send", "-f", str(intent), code=2)  # now known before sending
    assert refused["errors"][0]["reason"] == "body: expected 2 parameters ({{1}}, {{2}}), given 1"


def test_an_otp_goes_out_once_the_registry_is_synced(rig: Rig, tmp_path: Path) -> None:
    """Copy-code, one-tap and zero-tap authentication templates, synced as Meta lists them, each
    sent with its code in the body and in the OTP button (a url button)."""
    rig.sandbox.reset()
    rig.cli("templates", "sync")
    for n, name in enumerate(("login_copy_code", "login_one_tap", "login_zero_tap")):
        code = [{"type": "text", "text": f"48291{n}"}]
        body = {
            "name": name,
            "language": {"code": "en_US"},
            "components": [
                {"type": "body", "parameters": code},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": code},
            ],
        }
        intent = tmp_path / f"{name}.json"
        intent.write_text(json.dumps({"to": f"+91987650030{n}", "type": "template", "template": body}))
        assert rig.cli("send", "-f", str(intent))["wamid"].startswith("wamid.")
    sent = [m["body"]["template"] for m in rig.messages()]
    assert [t["name"] for t in sent] == ["login_copy_code", "login_one_tap", "login_zero_tap"]
    assert all(t["components"][1]["sub_type"] == "url" for t in sent)


def toml_value(value: Any) -> str:
    """A value as TOML's inline syntax (the campaign file's `[message]`)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans are written alike


# The shop's marketing templates as Meta lists them: a coupon with a limited-time offer, and a
# two-card carousel (the sandbox's registry; `templates sync` reads them).
COUPON_TEMPLATE = {
    "name": "flash_sale",
    "language": "en_US",
    "status": "APPROVED",
    "category": "MARKETING",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, 25% off until midnight"},
        {"type": "LIMITED_TIME_OFFER", "limited_time_offer": {"text": "Ends soon", "has_expiration": True}},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "COPY_CODE", "example": "FLASH25"},
                {"type": "URL", "text": "Shop", "url": "https://shop.example.com/{{1}}"},
            ],
        },
    ],
}
CAROUSEL_SYNCED = {
    "name": "summer_carousel",
    "language": "en_US",
    "status": "APPROVED",
    "category": "MARKETING",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, this summer's picks"},
        {
            "type": "CAROUSEL",
            "cards": [
                {
                    "components": [
                        {"type": "HEADER", "format": "IMAGE"},
                        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Buy"}]},
                    ]
                }
            ]
            * 2,
        },
    ],
}


def test_coupon_and_carousel_campaigns_fill_each_recipients_variables(rig: Rig, tmp_path: Path) -> None:
    """A campaign of a coupon template (its copy_code button's coupon_code from the recipient's
    row) and one of a carousel template (a payload per card), checked against the synced
    templates, sent to each recipient with their own values."""
    rig.sandbox.reset()
    rig.set_templates([COUPON_TEMPLATE, CAROUSEL_SYNCED])
    rig.cli("templates", "sync")
    rows = {"+919876500401": ("Asha", "ASHA25"), "+919876500402": ("Ravi", "RAVI25")}
    (tmp_path / "shoppers.csv").write_text(
        "phone,first_name,coupon\n" + "".join(f"{to},{name},{code}\n" for to, (name, code) in rows.items())
    )
    coupon = {
        **spec.LIMITED_TIME_OFFER,
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "{first_name}"}]},
            spec.LIMITED_TIME_OFFER["components"][1],
            {
                "type": "button",
                "sub_type": "copy_code",
                "index": 0,
                "parameters": [{"type": "coupon_code", "coupon_code": "{coupon}"}],
            },
            {
                "type": "button",
                "sub_type": "url",
                "index": 1,
                "parameters": [{"type": "text", "text": "{coupon}"}],
            },
        ],
    }
    carousel = json.loads(json.dumps(spec.CAROUSEL_TEMPLATE).replace('"Asha"', '"{first_name}"'))
    for card in carousel["components"][1]["cards"]:
        card["components"][1]["parameters"][0]["payload"] += "-{coupon}"
    for name, template in (("flash", coupon), ("picks", carousel)):
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\n[schedule]\nevery = 86400\n[audience]\ncsv = "shoppers.csv"\n'
            f'[message]\ntype = "template"\ntemplate = {toml_value(template)}\n'
        )
        assert rig.cli("campaign", "validate", str(tmp_path / f"{name}.toml"))[0]["recipients"] == 2
        ran = rig.cli("campaign", "run", str(tmp_path / f"{name}.toml"), "--run-id", "r1")
        assert (ran["sent"], ran["failed"]) == (2, 0), ran
    sent = {(m["body"]["to"], m["body"]["template"]["name"]): m["body"]["template"] for m in rig.messages()}
    for to, (first_name, code) in rows.items():
        offer = sent[to, "flash_sale"]["components"]
        assert offer[0]["parameters"] == [{"type": "text", "text": first_name}]
        assert offer[2]["parameters"] == [{"type": "coupon_code", "coupon_code": code}]
        assert offer[3]["parameters"] == [{"type": "text", "text": code}]
        cards = sent[to, "summer_carousel"]["components"][1]["cards"]
        assert [c["components"][1]["parameters"][0]["payload"] for c in cards] == [
            f"card-0-{code}",
            f"card-1-{code}",
        ]


def test_beat_resyncs_the_registry_every_interval(rig: Rig) -> None:
    rig.sandbox.reset()
    rig.cli("templates", "sync")
    rig.set_templates([{"name": "brand_new", "language": "hi", "status": "APPROVED", "components": []}])
    beat = Beat(
        rig.workdir, {**rig.env, "DISPATCH_TEMPLATE_SYNC_INTERVAL": "1", "DISPATCH_BEAT_INTERVAL": "1"}
    ).start()
    try:
        wait_for(lambda: rig.cli("templates", "show", "brand_new"), 30, "beat's re-sync", 0.5)
    finally:
        beat.stop()


def test_a_thousand_recipients_with_one_image_link_upload_it_once(rig: Rig, tmp_path: Path) -> None:
    rig.sandbox.reset()
    rig.files.hits.clear()
    link = rig.files.url("/receipt.png")
    numbers = [f"+91987{i:07d}" for i in range(RECIPIENTS)]
    path = tmp_path / "receipts.toml"
    path.write_text(
        f'name = "receipts"\n[schedule]\nevery = 86400\n[audience]\nnumbers = {json.dumps(numbers)}\n'
        f'[message]\ntype = "image"\nimage = {{ link = "{link}", upload = true, caption = "Your receipt" }}\n'
    )
    done = rig.cli("campaign", "run", str(path), "--run-id", "once")
    assert done["sent"] == RECIPIENTS and done["failed"] == 0
    uploads = [r for r in rig.sandbox.requests() if r.get("route") == "media"]
    assert len(uploads) == 1 and rig.files.hits == ["/receipt.png"]
    sent = rig.messages()
    assert len(sent) == RECIPIENTS and {r["body"]["to"] for r in sent} == set(numbers)
    [media_id] = {r["body"]["image"]["id"] for r in sent}
    shown = rig.cli("media", "show", media_id)
    assert shown["file_size"] == uploads[0]["size"] and shown["mime_type"] == "image/png"
    assert rig.cli("media", "delete", media_id) == {"success": True}


def test_media_upload_checks_the_rules_first_then_show_and_delete(rig: Rig, tmp_path: Path) -> None:
    rig.sandbox.reset()
    big = tmp_path / "big.png"
    big.write_bytes(PNG + b"\x00" * 5 * 2**20)
    too_big = rig.cli("media", "upload", str(big), code=1)
    assert (
        too_big["kind"] == "invalid" and "(image: image/jpeg or image/png, at most 5 MB)" in too_big["error"]
    )
    gif = tmp_path / "anim.gif"
    gif.write_bytes(b"GIF89a")
    assert "image/gif is not accepted" in rig.cli("media", "upload", str(gif), code=1)["error"]
    assert rig.sandbox.requests() == []  # nothing reached the API

    good = tmp_path / "receipt.png"
    good.write_bytes(PNG)
    media_id = rig.cli("media", "upload", str(good))["id"]
    assert rig.cli("media", "show", media_id)["file_size"] == len(PNG)
    assert rig.cli("media", "delete", media_id) == {"success": True}
    assert "no media" in rig.cli("media", "show", media_id, code=1)["error"]
    assert "a media id is digits" in rig.cli("media", "show", "../123", code=2)["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "169.254.169.254"])
def test_links_to_loopback_or_metadata_are_refused_without_the_allow_list(stack, api, host: str) -> None:

    from worker.tasks import send_message

    with media_server() as files:
        link = f"http://{host.format(port=files.port)}/receipt.png"
        result = send_message.delay(to="+919876500204", type="image", image={"link": link, "upload": True})
        with pytest.raises(Exception) as caught:
            result.get(timeout=30)
        assert files.hits == []
    assert result.state == "FAILURE" and caught.value.info["kind"] == "permanent"  # type: ignore[attr-defined]
    assert "non-public address" in str(caught.value) and api.requests() == []


def test_media_download_saves_what_was_uploaded(rig: Rig, tmp_path: Path) -> None:
    """`wa-dispatch media download` as an operator saves a customer's photo by its id."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    media_id = rig.cli("media", "upload", str(photo))["id"]
    saved = rig.cli("media", "download", media_id, str(tmp_path / "saved.png"))
    assert (tmp_path / "saved.png").read_bytes() == PNG and saved["file_size"] == len(PNG)
    refused = rig.cli("media", "download", media_id, str(tmp_path / "bad.png"), "--sha256", "0" * 64, code=1)
    assert "sha256" in refused["error"] and not (tmp_path / "bad.png").exists()
