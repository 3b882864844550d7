# SPDX-License-Identifier: MIT
"""Fixtures shared by the tests of the ``qompr`` commands."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import qompr
from qompr.daemon import HelperServer
from qompr.managers import PRManager
from qompr.options import process


@pytest.fixture
def helper_socket(tmp_path: Path) -> Iterator[str]:
    """A qompr helper daemon serving pr-manager-emulated on a unix socket, in a thread."""
    tree = qompr.new_tree(load_entrypoints=False)
    objects = process(tree, ["pr-manager-emulated,id=emu"])
    assert isinstance(objects, list) and isinstance(objects[0], PRManager)
    path = str(tmp_path / "helper.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    server = HelperServer(listener, backend=objects[0])
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    yield path
    server.stop()
    assert server.wait_stopped(10)
    listener.close()
    tree.object_del("emu")
