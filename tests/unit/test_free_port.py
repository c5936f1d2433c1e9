"""free_port never hands the same port out twice in a process, even when the OS offers it."""

from __future__ import annotations

import socket
from typing import Any, ClassVar

import pytest

from simulators import servers


class _Socket:
    """A socket whose bind(0) gets the ports of `offers` in turn."""

    offers: ClassVar[list[int]] = []

    def __init__(self, *_: Any) -> None:
        self.port = 0

    def __enter__(self) -> _Socket:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def bind(self, _: tuple[str, int]) -> None:
        self.port = _Socket.offers.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def test_a_port_offered_again_by_the_os_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "_GIVEN", set())
    monkeypatch.setattr(servers.socket, "socket", _Socket)
    _Socket.offers = [40001, 40001, 40001, 40002]
    assert [servers.free_port(), servers.free_port()] == [40001, 40002]
    assert _Socket.offers == []


def test_real_ports_are_distinct_and_bindable() -> None:
    ports = [servers.free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))
