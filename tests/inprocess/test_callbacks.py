"""HTTP callbacks in process: the callbacks file's errors, the signature, and the outbox's retry
schedule, dead letters and re-drive against a real receiving server (tests/integration/
callback_receiver.py) and the session's Redis, with every retry setting at its default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.integration.callback_receiver import receiver
from worker.callbacks.config import CallbacksError, load_callbacks
from worker.callbacks.deliver import Dispatcher, routes
from worker.callbacks.events import EventType, event, event_id
from worker.callbacks.outbox import DEAD, DUE, Outbox
from worker.callbacks.signing import sign, verify
from worker.settings import Settings

SECRET = "cb-secret-SECRET-41d7"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[callbacks.shop]\nsecret_env = 'CB_SECRET'\n", "key 'shop': url: Field required"),
        ("[callbacks.shop]\nurl = 'ftp://x'\nsecret_env = 'CB_SECRET'\n", "key 'shop': url: an http://"),
        (
            "[callbacks.shop]\nurl = 'https://x.example'\n",
            "key 'shop': table: give exactly one of secret_env",
        ),
        (
            "[callbacks.shop]\nurl = 'https://x.example'\nsecret_env = 'CB_UNSET'\n",
            "key 'shop': secret_env: the",
        ),
        (
            "[callbacks.shop]\nurl = 'https://x.example'\nsecret_file = '/nope'\n",
            "key 'shop': secret_file: cannot",
        ),
        ("[callbacks.shop]\nurl = 'https://x'\nsecret = 'inline'\n", "key 'shop': secret: Extra inputs"),
        (
            "[callbacks.'bad key']\nurl = 'https://x'\nsecret_env = 'CB_SECRET'\n",
            "key 'bad key': an API key name",
        ),
        ("[senders.x]\n", "expected [callbacks.KEY_NAME] tables"),
        ("[callbacks\n", "Expected"),
    ],
)
def test_a_broken_callbacks_file_is_refused_naming_the_file_key_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.setenv("CB_SECRET", SECRET)
    path = tmp_path / "callbacks.toml"
    path.write_text(text)
    with pytest.raises(CallbacksError) as caught:
        load_callbacks(path)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)
    assert SECRET not in str(caught.value) and "inline" not in str(caught.value)


def test_a_signature_verifies_and_a_replay_or_a_changed_body_does_not() -> None:
    body, now = b'{"id":"evt_1"}', int(time.time())
    header = sign(SECRET.encode(), body, now)
    assert header.startswith(f"t={now},v1=") and verify(header, body, SECRET.encode())
    assert not verify(header, body + b" ", SECRET.encode())
    assert not verify(header, body, b"another secret")
    assert not verify(sign(SECRET.encode(), body, now - 600), body, SECRET.encode())  # a replay
    assert not verify(None, body, SECRET.encode()) and not verify("v1=abc", body, SECRET.encode())


def test_an_event_is_retried_on_tenacitys_schedule_then_kept_and_redriven(
    r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CB_SECRET", SECRET)
    with receiver(SECRET.encode()) as app:
        path = tmp_path / "callbacks.toml"
        path.write_text(f"[callbacks.shop]\nurl = '{app.url}'\nsecret_env = 'CB_SECRET'\n")
        callbacks = load_callbacks(path)
        settings = Settings(DISPATCH_CALLBACK_ALLOW_HOSTS="127.0.0.1")  # every retry setting its default
        outbox = routes(r, settings, callbacks, []).outbox
        dispatcher = Dispatcher(outbox, callbacks, settings)
        data = {"wamid": "wamid.CB1", "status": "delivered"}
        ident = event_id(EventType.MESSAGE_STATUS, "wamid.CB1", "delivered")
        outbox.add([(event(EventType.MESSAGE_STATUS, ident, data, time.time()), "shop")])
        outbox.add([(event(EventType.MESSAGE_STATUS, ident, data, time.time()), "shop")])  # applied twice
        [entry] = outbox.due(time.time(), 10)
        app.plan = [500, 503]
        waits = []
        for _ in range(2):  # each attempt is due after tenacity's wait; taken at once here (no one waits)
            pending = outbox.take(entry, dispatcher.lease)
            assert pending is not None and outbox.take(entry, dispatcher.lease) is None  # one worker each
            before = time.time()
            assert not dispatcher.attempt(pending)
            waits.append(r.zscore(DUE, entry) - before)
        assert 1 <= waits[0] <= 3 and waits[1] > waits[0]  # 1 s, doubling, with up to 1 s of jitter
        assert outbox.get(entry).error == "HTTP 503" and outbox.get(entry).attempts == 2
        # The receiver never answers 2xx for DISPATCH_CALLBACK_MAX_AGE: the entry is a dead letter.
        app.plan = [500]
        r.hset("wa:cb:event:" + entry, "first", time.time() - settings.callback_max_age)  # a day ago
        assert not dispatcher.attempt(outbox.take(entry, dispatcher.lease))
        [dead] = outbox.dead()
        assert (dead["key"], dead["event_id"], dead["attempts"], dead["error"]) == (
            "shop",
            ident,
            3,
            "HTTP 500",
        )
        assert r.zscore(DUE, entry) is None and SECRET not in str(r.hgetall("wa:cb:event:" + entry))
        assert outbox.redrive([entry]) == [entry] and r.zscore(DEAD, entry) is None
        assert dispatcher.attempt(outbox.take(entry, dispatcher.lease))  # the receiver is back
        assert not r.exists("wa:cb:event:" + entry) and outbox.pending() == 0
        assert all(g["verified"] for g in app.got) and list(app.taken()) == [ident]
        assert app.taken()[ident] == {
            "id": ident,
            "type": "message.status",
            "created": pytest.approx(time.time(), abs=60),
            "data": data,
        }


def test_a_host_that_is_not_public_is_refused_unless_allowed(
    r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CB_SECRET", SECRET)
    with receiver(SECRET.encode()) as app:
        path = tmp_path / "callbacks.toml"
        path.write_text(f"[callbacks.shop]\nurl = '{app.url}'\nsecret_env = 'CB_SECRET'\n")
        callbacks = load_callbacks(path)
        outbox = Outbox(r, 3600)
        dispatcher = Dispatcher(outbox, callbacks, Settings())
        outbox.add([(event(EventType.MESSAGE_INBOUND, "evt_x", {}, time.time()), "shop")])
        [entry] = outbox.due(time.time(), 10)
        assert not dispatcher.attempt(outbox.take(entry, dispatcher.lease))
        assert "DISPATCH_CALLBACK_ALLOW_HOSTS" in (outbox.get(entry).error or "") and not app.got
