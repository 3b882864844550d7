# SPDX-License-Identifier: MIT
"""The unix-socket primitives both ends share: sun_path as QEMU fills it, reads as the
protocol core asks for them."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from qompr.errors import ConnectError
from qompr.protocol import ReadSpec
from qompr.transport.unix import UNIX_PATH_MAX
from qompr.transport.unix import check_unix_path
from qompr.transport.unix import raw_bind
from qompr.transport.unix import raw_connect
from qompr.transport.unix import recv_spec


def _path_of_length(base: Path, length: int) -> str:
    """An absolute path of exactly *length* bytes under *base* (directories made)."""
    path = str(base)
    while length - len(path) > 60:
        path = os.path.join(path, "d" * 50)
        os.makedirs(path, exist_ok=True)
    path = os.path.join(path, "s" * (length - len(path) - 1))
    assert len(os.fsencode(path)) == length
    return path


@pytest.mark.parametrize("length", [UNIX_PATH_MAX - 1, UNIX_PATH_MAX])
def test_bind_and_connect_up_to_a_full_sun_path(tmp_path: Path, length: int) -> None:
    path = _path_of_length(tmp_path, length)
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        assert raw_bind(listener, check_unix_path(path)) == 0  # 108 bytes: no room for a NUL
        listener.listen(1)
        assert os.path.exists(path)
        assert raw_connect(client, check_unix_path(path)) == 0
        listener.accept()[0].close()


def test_errors_are_errnos_and_qemus_texts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        assert raw_connect(sock, os.fsencode(tmp_path / "absent")) == errno.ENOENT
    with socket.socket(socket.AF_UNIX) as sock:
        # An empty path is the abstract name of 107 NULs, as QEMU's sockaddr_un says.
        assert raw_connect(sock, b"") == errno.ECONNREFUSED
    with pytest.raises(ConnectError) as info:
        check_unix_path("/" + "x" * UNIX_PATH_MAX)
    assert info.value.message.endswith("' is too long")
    assert info.value.hint == "Path must be less than 108 bytes"


def test_a_read_without_a_control_buffer_drops_the_fds() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        socket.send_fds(a, [b"abcd"], [w])
        socket.send_fds(a, [b"efgh"], [w])
        os.close(w)
        assert recv_spec(b, ReadSpec(4, False)) == (b"abcd", [])
        data, fds = recv_spec(b, ReadSpec(16, True))
        assert data == b"efgh" and len(fds) == 1
        os.close(fds[0])
        os.set_blocking(r, False)
        assert os.read(r, 1) == b""  # every write end is closed: the dropped one too
    finally:
        os.close(r)
        a.close()
        b.close()
