# SPDX-License-Identifier: MIT
"""The raw client and socket waiting: errors are the kit's, and say what happened."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.errors import QomprError
from qompr.testing import HANDSHAKE
from qompr.testing import HelperExitedError
from qompr.testing import PeerClosedError
from qompr.testing import UnexpectedReplyError
from qompr.testing import WaitTimeoutError
from qompr.testing import connected
from qompr.testing import is_closed
from qompr.testing import recv_exact
from qompr.testing import wait_for_socket


class FakeHelper:
    """Accepts one connection, sends *features*, and records the 4 bytes it gets back."""

    def __init__(self, path: Path, features: bytes) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.features = features
        self.answer = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed before anyone connected
            return
        # A client that only probes (wait_for_socket) has gone by now: that is no error.
        with conn, contextlib.suppress(PeerClosedError, OSError):
            conn.settimeout(10)
            conn.sendall(self.features)
            self.answer = recv_exact(conn, 4)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def helper_path(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "h.sock"


def test_wait_for_socket_returns_once_something_listens(helper_path: Path) -> None:
    helper = FakeHelper(helper_path, HANDSHAKE)
    try:
        wait_for_socket(str(helper_path), timeout=10)
        helper.thread.join(10)  # the probe connection was accepted
        assert not helper.thread.is_alive()
    finally:
        helper.close()


def test_wait_for_socket_times_out_with_the_kits_error(helper_path: Path) -> None:
    with pytest.raises(WaitTimeoutError, match=r"nothing listens on .*h\.sock after 0\.1 s"):
        wait_for_socket(str(helper_path), timeout=0.1)
    assert issubclass(WaitTimeoutError, TimeoutError)
    assert issubclass(WaitTimeoutError, QomprError)


def test_wait_for_socket_stops_when_the_process_exits(helper_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(30)
    with pytest.raises(HelperExitedError, match="status 3") as info:
        wait_for_socket(str(helper_path), timeout=30, proc=proc)
    assert info.value.status == 3


def test_connected_does_qemus_handshake(helper_path: Path) -> None:
    helper = FakeHelper(helper_path, HANDSHAKE)
    try:
        with connected(str(helper_path)):
            helper.thread.join(10)
        assert helper.answer == HANDSHAKE
    finally:
        helper.close()


def test_connected_refuses_unexpected_features(helper_path: Path) -> None:
    helper = FakeHelper(helper_path, b"\xff\xff\xff\xff")
    try:
        with (
            pytest.raises(UnexpectedReplyError, match="announced features ffffffff"),
            connected(str(helper_path)),
        ):
            pass
    finally:
        helper.close()


def test_connected_accepts_features_it_is_told_to(helper_path: Path) -> None:
    helper = FakeHelper(helper_path, b"\x00\x00\x00\x05")
    try:
        with connected(str(helper_path), expect_features=None):
            helper.thread.join(10)
        assert helper.answer == HANDSHAKE  # it answers with no feature, as QEMU 7.2
    finally:
        helper.close()


def test_recv_exact_and_is_closed() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"abc")
        assert recv_exact(a, 2) == b"ab"
        assert not is_closed(a, timeout=0.05)  # consumes "c"
        assert not is_closed(a, timeout=0.05)  # nothing: still open
        b.close()
        with pytest.raises(PeerClosedError, match="end of file after 0 of 4 bytes"):
            recv_exact(a, 4)
        assert is_closed(a)
    assert issubclass(PeerClosedError, EOFError)
