"""The Lua scripts: each step the project takes atomically in Redis, one `.lua` file each here.

Every file opens with a header saying what it does and why it must be one step, its KEYS, its
ARGV and what it returns. A script that shares code with another names the part on a line of its
own, `--@include <part>`, and `parts/<part>.lua` is put there when the script is loaded; a part
defines functions that take their keys and arguments as named tables, so the scripts that use it
need no offsets.

One way to load and call them: `load(name)` gives a `Script`; `Script.on(client)` binds it to a
client. A bound script's call goes through the client's group commit (worker.redis_conn), which
batches concurrent threads' calls into shared round trips and loads the script again after a
Redis restart; `queue` adds a call to a pipeline of the caller's own (redis-py loads it first
when Redis does not know it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline

from worker.redis_conn import group_of

_INCLUDE = re.compile(r"^--@include (\w+)$", re.MULTILINE)


def _text(path: str) -> str:
    return resources.files(__package__).joinpath(path).read_text(encoding="utf-8")


def _expand(source: str, seen: set[str]) -> str:
    """`source` with each part it includes put in its place, once (a part a part includes too)."""

    def part(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return f"-- ({name}: included above)"
        seen.add(name)
        return _expand(_text(f"parts/{name}.lua"), seen).rstrip("\n")

    return _INCLUDE.sub(part, source)


@dataclass(frozen=True)
class Script:
    name: str
    source: str  # with its parts put in

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()

    def on(self, client: redis.Redis) -> BoundScript:
        return BoundScript(self, client)


@cache
def load(name: str) -> Script:
    """`<name>.lua` of this folder, its parts included."""
    return Script(name, _expand(_text(f"{name}.lua"), set()))


def names() -> list[str]:
    """Every script of this folder (not the parts)."""
    return sorted(
        p.name.removesuffix(".lua") for p in resources.files(__package__).iterdir() if p.name.endswith(".lua")
    )


class BoundScript:
    """A script on one client: called through its group commit, or queued on a pipeline."""

    def __init__(self, script: Script, client: redis.Redis) -> None:
        self.script = script
        self.group = group_of(client)
        self.sha = self.group.script(script.source)
        self._queued = client.register_script(script.source)

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """Its reply, in a round trip shared with the calls other threads make at the same time."""
        return self.group.call(self.sha, keys, args)

    def batch(self, pipe: Pipeline, keys: list[str], args: list[Any]) -> None:
        """Queue a call on a group commit's pipeline (inside `group.execute`)."""
        self.group.evalsha(pipe, self.sha, keys, args)

    def queue(self, pipe: Pipeline, keys: list[str], args: list[Any]) -> None:
        """Queue a call on a pipeline of the caller's own; its reply comes with the pipeline's."""
        self._queued(keys=keys, args=args, client=pipe)
