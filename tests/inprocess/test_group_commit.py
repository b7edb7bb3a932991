"""Group commit: concurrent threads' Redis commands share round trips, and each thread still gets
its own replies, its own errors, and its scripts back after Redis forgot them."""

from __future__ import annotations

import gc
import socket
import threading
import time
import weakref
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.redis_conn import GroupCommit, group_of

THREADS = 64


def execs(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_exec", {}).get("calls", 0))


def test_threads_that_come_while_a_round_trip_is_in_flight_share_the_next_one(r: redis.Redis) -> None:
    group = GroupCommit(r)
    in_flight, release = threading.Event(), threading.Event()

    def held(pipe: Any) -> None:  # the first round trip is held open while the others arrive
        in_flight.set()
        release.wait(10)
        pipe.incr("first")

    replies: dict[int, list[Any]] = {}

    def caller(i: int) -> None:
        replies[i] = group.execute(lambda pipe: pipe.incr(f"n:{i}", i).get(f"n:{i}"))

    before = execs(r)
    first = threading.Thread(target=group.execute, args=(held,))
    first.start()
    assert in_flight.wait(5)
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every caller is now waiting behind the held round trip
    release.set()
    for thread in [first, *threads]:
        thread.join(10)

    assert execs(r) - before == 2  # the held one, then the 64 others together
    assert replies == {i: [i, str(i)] for i in range(THREADS)}
    assert r.get("first") == "1"


def test_an_error_is_raised_in_its_own_caller_only(r: redis.Redis) -> None:
    group = GroupCommit(r)
    r.set("text", "not a number")
    in_flight, release = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def held(pipe: Any) -> None:
        in_flight.set()
        release.wait(10)

    def run(name: str, build: Any) -> None:
        try:
            outcomes[name] = group.execute(build)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each caller got
            outcomes[name] = exc

    def broken(pipe: Any) -> None:
        raise ValueError("a mistake in building")

    first = threading.Thread(target=group.execute, args=(held,))
    first.start()
    assert in_flight.wait(5)
    callers = {
        "ok": lambda pipe: pipe.set("a", 1).incr("a"),
        "wrongtype": lambda pipe: pipe.set("b", 1).incr("text"),
        "broken": broken,
        "also ok": lambda pipe: pipe.incr("c"),
    }
    threads = [threading.Thread(target=run, args=item) for item in callers.items()]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    release.set()
    for thread in [first, *threads]:
        thread.join(10)

    assert outcomes["ok"] == [True, 2] and outcomes["also ok"] == [1]
    assert isinstance(outcomes["wrongtype"], redis.ResponseError)
    assert r.get("b") == "1"  # its other command ran: one MULTI/EXEC, as a pipeline of its own would
    assert isinstance(outcomes["broken"], ValueError)


def test_scripts_are_loaded_again_after_redis_forgot_them(r: redis.Redis) -> None:
    group = GroupCommit(r)
    sha = group.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert group.call(sha, ["s"], [2]) == 2
    r.script_flush()
    assert group.call(sha, ["s"], [3]) == 5  # run once, after the reload


def test_callers_get_the_error_when_redis_does_not_answer() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    group = GroupCommit(redis.Redis(port=port, retry=Retry(NoBackoff(), 0)))
    with pytest.raises(redis.ConnectionError):
        group.execute(lambda pipe: pipe.get("x"))
    with pytest.raises(redis.ConnectionError):  # and the next caller is not left waiting
        group.execute(lambda pipe: pipe.get("x"))


def test_a_failed_script_reload_is_raised_in_its_caller_once(r: redis.Redis) -> None:
    class CannotLoad(redis.Redis):  # Redis answers commands but a SCRIPT LOAD fails (still restarting)
        def script_load(self, script: Any) -> Any:
            raise redis.ConnectionError("loading")

    client = CannotLoad(connection_pool=r.connection_pool)
    group = GroupCommit(client)
    sha = group.script("return 1")
    r.script_flush()
    with pytest.raises(redis.ConnectionError, match="loading"):
        group.call(sha, [], [])
    assert group.execute(lambda pipe: pipe.incr("after")) == [1]  # nobody left waiting


def test_a_client_and_its_group_go_together(r: redis.Redis) -> None:
    """A broker channel's client is replaced at every reconnect: its group must not keep it alive."""
    client = redis.Redis(connection_pool=r.connection_pool)
    assert group_of(client) is group_of(client)
    gone = weakref.ref(client)
    del client
    gc.collect()
    assert gone() is None
