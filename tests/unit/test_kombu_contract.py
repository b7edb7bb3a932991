"""worker/broker.py builds on private parts of kombu's Redis transport. Each private name it uses
and does not define itself must exist in the installed kombu, so an upgrade that renames one
fails here, loudly, instead of as a worker that stops consuming."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

BROKER = Path(__file__).resolve().parents[2] / "worker" / "broker.py"
# What broker.py reaches through: its Channel, QoS and Transport subclass kombu's, and the
# channel's `connection` is the transport, its `qos` kombu's QoS.
KOMBU = (kombu_redis.Channel, kombu_redis.QoS, kombu_redis.Transport, virtual.Channel, virtual.QoS)
# Attributes kombu sets on an instance (`self._expires = {}` in Channel.__init__) are not on a class.
KOMBU_SOURCE = inspect.getsource(kombu_redis) + inspect.getsource(virtual.base)


def private_names_used(tree: ast.Module) -> set[str]:
    """`_name` attributes read anywhere in the module (self._x, super()._x, self.channel._x, ...)."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
    }


def private_names_defined(tree: ast.Module) -> set[str]:
    """Methods, class attributes and `self._x = ...` assignments of the module's own classes."""
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    defined.add(target.id)
                elif isinstance(target, ast.Attribute) and getattr(target.value, "id", None) == "self":
                    defined.add(target.attr)
    return defined


def test_every_private_kombu_name_the_transport_uses_exists() -> None:
    tree = ast.parse(BROKER.read_text())
    borrowed = private_names_used(tree) - private_names_defined(tree)
    assert borrowed, "broker.py uses no private kombu name: this test has nothing to guard"
    missing = sorted(
        name
        for name in borrowed
        if not any(hasattr(cls, name) for cls in KOMBU) and f"self.{name} = " not in KOMBU_SOURCE
    )
    assert missing == [], f"kombu no longer has {missing}: worker/broker.py must follow it"
