# SPDX-License-Identifier: MIT
"""A COMMIT whose connection is cut after the server received it (the crash of
``pg_ctl restart -m immediate``, made exact): the store learns the commit's fate by
reconnecting, retrying while the database still refuses connections, and answers with the
command's real result when the database is back in time; retryable only when it is not.

A TCP proxy between the store and the server forwards everything until armed; armed, it
forwards the next ``COMMIT``, waits for the server's answer (so the commit happened), drops
that answer and both sockets, and refuses connections (accepts and closes them at once) for
a while: what the store sees of a server that crashed right after committing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import pytest

from qompr.managers.emulated import PRManagerEmulated
from qompr.qom import ObjectTree
from qompr.scsi import Nexus
from qompr.scsi import PrOutAction
from qompr.scsi import SenseCode

from .harness import pr_out

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 (qompr[postgresql]) is not installed")

#: The simple-protocol Query message psycopg sends to end a transaction.
_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"


class CommitCutter:
    """The proxy (see the module docstring)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.outage = 0.0
        self.armed = False
        self.committed = threading.Event()  # the server answered the cut COMMIT
        self.refused = 0
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc[-1] = host
        return urlunsplit(parts._replace(netloc="@".join(netloc)))

    def arm(self, outage: float) -> None:
        with self._lock:
            self.outage = outage
            self.armed = True

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._socks:
                _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                refuse = time.monotonic() < self._refuse_until
                if refuse:
                    self.refused += 1
            if refuse:
                _close(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._socks += [client, server]
            cut = threading.Event()
            threading.Thread(target=self._up, args=(client, server, cut), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, cut), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, cut: threading.Event) -> None:
        while data := _recv(client):
            with self._lock:
                if self.armed and _COMMIT in data:
                    self.armed = False
                    cut.set()
            try:
                server.sendall(data)
            except OSError:
                break
        _close(server)

    def _down(self, server: socket.socket, client: socket.socket, cut: threading.Event) -> None:
        while data := _recv(server):
            if cut.is_set():
                # The server answered the COMMIT: it happened.  The client never learns it.
                with self._lock:
                    self._refuse_until = time.monotonic() + self.outage
                self.committed.set()
                break
            try:
                client.sendall(data)
            except OSError:
                break
        _close(client)
        _close(server)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def cutter(pg_state_uri: str) -> Iterator[CommitCutter]:
    parts = urlsplit(pg_state_uri)
    assert parts.hostname is not None and parts.port is not None
    proxy = CommitCutter((parts.hostname, parts.port))
    yield proxy
    proxy.close()


@pytest.fixture
def image(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / f"commit-{time.time_ns()}.img", os.O_RDWR | os.O_CREAT, 0o600)
    yield fd
    os.close(fd)


def manager(tree: ObjectTree, state: str, **props: Any) -> PRManagerEmulated:
    obj = tree.object_add("pr-manager-emulated", "pg", state=state, lu_id="path", **props)
    assert isinstance(obj, PRManagerEmulated)
    return obj


def test_a_cut_commit_is_answered_by_its_real_result_when_the_database_returns_in_time(
    tree: ObjectTree, pg_state_uri: str, cutter: CommitCutter, image: int
) -> None:
    m = manager(tree, cutter.uri(pg_state_uri), timeout=4000)
    a = Nexus("vm:a")
    assert m.run(image, *pr_out(PrOutAction.REGISTER, sark=1), nexus=a).ok
    # The database refuses connections for 2 s after the commit: well within the deadline,
    # and long enough for the store's first reconnect to meet it even on a loaded machine.
    cutter.arm(outage=2.0)
    start = time.monotonic()
    answer = m.run(image, *pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=7), nexus=a)
    took = time.monotonic() - start
    assert cutter.committed.is_set(), "the proxy cut no COMMIT"
    assert cutter.refused > 0, "the store did not try to reconnect during the outage"
    # The commit happened: the answer is its real one, not "unknown" (retryable).
    assert answer.ok, answer
    assert took < 4.0 + 4.0
    assert m.snapshot(image).keys == (7,)


def test_a_cut_commit_is_retryable_when_the_database_stays_away(
    tree: ObjectTree, pg_state_uri: str, cutter: CommitCutter, image: int
) -> None:
    """Away past the command's deadline and the one more timeout a cut commit may wait: the
    outcome is unknown, answered retryable, and in time."""
    m = manager(tree, cutter.uri(pg_state_uri), timeout=1000)
    a = Nexus("vm:a")
    assert m.run(image, *pr_out(PrOutAction.REGISTER, sark=1), nexus=a).ok
    cutter.arm(outage=4.0)
    start = time.monotonic()
    answer = m.run(image, *pr_out(PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY, sark=7), nexus=a)
    took = time.monotonic() - start
    assert cutter.committed.is_set(), "the proxy cut no COMMIT"
    assert answer.sense_code == SenseCode.LUN_COMM_FAILURE, answer
    assert took < 2 * 1.0 + 1.0
