"""A second host for fault tests: a network namespace of the test's own, joined to this machine by
two veth links, one it reaches Redis by and one it reaches the API by. Either link can be cut and
healed: cut, the host's side is down, so a new connection fails at once (`Network is unreachable`)
and an open one hears nothing more, as a host behind a broken switch does. This machine keeps
reaching both (the addresses stay its own). Needs root and `ip` (iproute2), as CI has."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum


class Peer(StrEnum):
    REDIS = "r"
    API = "a"


@dataclass(frozen=True)
class Link:
    device: str  # this host's end, inside the namespace
    machine_ip: str  # the machine's end: what this host connects to
    host_ip: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class TestHost:
    """`with TestHost() as host:` ... `host.cut(Peer.REDIS)`, `host.heal(Peer.REDIS)`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, index: int = 0) -> None:
        tag = f"{os.getpid() % 100000}{index}"
        self.name = f"wa-host-{tag}"
        self.links = {
            peer: Link(f"wa{tag}{peer.value}", f"10.23{i}.{index}.1", f"10.23{i}.{index}.2")
            for i, peer in enumerate(Peer, start=1)
        }

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and shutil.which("ip") is not None

    def __enter__(self) -> TestHost:
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        for link in self.links.values():
            outside = link.device + "m"
            _ip("link", "add", outside, "type", "veth", "peer", "name", link.device)
            _ip("link", "set", link.device, "netns", self.name)
            _ip("addr", "add", f"{link.machine_ip}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", self.name, "addr", "add", f"{link.host_ip}/30", "dev", link.device)
            _ip("-n", self.name, "link", "set", link.device, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        for link in self.links.values():
            subprocess.run(["ip", "link", "del", link.device + "m"], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)

    def cut(self, peer: Peer) -> None:
        _ip("-n", self.name, "link", "set", self.links[peer].device, "down")

    def heal(self, peer: Peer) -> None:
        _ip("-n", self.name, "link", "set", self.links[peer].device, "up")
