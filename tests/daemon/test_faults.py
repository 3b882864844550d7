# SPDX-License-Identifier: MIT
"""Faults with real processes: a helper killed mid-command, clients killed mid-request, and
hostile input fuzzed into a running qompr-pr-helper (no crash, no fd leak, others served)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings

import qompr
from qompr.managers import PRManagerHelper
from qompr.scsi import SenseCode
from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import open_fd_count
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import request

KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]
ARGV = [sys.executable, "-m", "qompr.daemon.main", *KEEP]
READ_KEYS = bytes([0x5E, 0, 0, 0, 0, 0, 0, 0, 255, 0])


def settle_fd_count(pid: int, target: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    count = open_fd_count(pid)
    while count != target and time.monotonic() < deadline:
        time.sleep(0.02)
        count = open_fd_count(pid)
    return count


def stable_fd_count(pid: int) -> int:
    """The fd count once it stops changing (connections just closed are released)."""
    last = open_fd_count(pid)
    for _ in range(100):
        time.sleep(0.03)
        now = open_fd_count(pid)
        if now == last:
            return now
        last = now
    return last


def served(path: str) -> bool:
    with connected(path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            return request(sock, pr_in(), fd)[0] == 2
        finally:
            os.close(fd)


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[HelperProcess]:
    with HelperProcess(ARGV, str(tmp_path)) as proc:
        assert served(proc.path)
        yield proc


def test_helper_killed_mid_command_then_restarted(tmp_path: Path) -> None:
    events: list[bool] = []

    class Recorder:
        @qompr.hookimpl
        def qompr_pr_manager_status_changed(self, manager: Any, id: str, connected: bool) -> None:
            events.append(connected)

    pm = qompr.get_plugin_manager(load_entrypoints=False)
    pm.register(Recorder())
    tree = qompr.new_tree(pm)
    helper = HelperProcess(ARGV, str(tmp_path)).start()
    obj = tree.object_add("pr-manager-helper", "h", path=helper.path)
    assert isinstance(obj, PRManagerHelper)
    obj.reconnect_delay = 0.2
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        os.kill(helper.pid, signal.SIGSTOP)  # the command will be read by nobody...
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(obj.execute(fd, READ_KEYS)))
        worker.start()
        time.sleep(0.3)
        helper.stop(signal.SIGKILL)  # ...and the helper dies with it in flight
        worker.join(10)
        assert results[0].sense == SenseCode.LUN_COMM_FAILURE.to_bytes()
        assert not obj.is_connected()
        helper.start()  # back on the same path: the next command reconnects
        assert obj.execute(fd, READ_KEYS).sense_code == SenseCode.IO_ERROR
        assert events == [True, False, True]
    finally:
        os.close(fd)
        helper.stop()


CLIENT = """
import os, socket, sys, time
sock = socket.socket(socket.AF_UNIX); sock.connect(sys.argv[1])
sock.recv(4); sock.sendall(bytes(4))
fd = os.open("/dev/null", os.O_RDWR)
head = bytes.fromhex(sys.argv[2])
socket.send_fds(sock, [head], [fd])
print("sent", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    "sent",
    [
        pr_in()[:8],  # half a CDB, its fd stashed
        pr_out(24) + bytes(10),  # a PR OUT and part of its parameter list
        pr_in(),  # a whole request: the answer goes nowhere
        pr_in() + pr_in(),  # a second CDB without an fd
    ],
)
def test_a_client_killed_mid_request_leaks_nothing(helper: HelperProcess, sent: bytes) -> None:
    baseline = stable_fd_count(helper.pid)
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, helper.path, sent.hex()], stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"sent\n"
    child.kill()
    child.wait()
    assert settle_fd_count(helper.pid, baseline) == baseline
    assert served(helper.path)
    assert helper.proc is not None and helper.proc.poll() is None


_FD_KINDS = ["null", "null-ro", "pipe", "sock", "dir"]
_PIECES = st.one_of(
    st.binary(max_size=48),
    st.sampled_from([bytes(4), pr_in(), pr_in(8193), pr_out(24) + bytes(24), pr_out(8192)]),
)
_CONVERSATIONS = st.lists(
    st.tuples(_PIECES, st.lists(st.sampled_from(_FD_KINDS), max_size=3)), min_size=1, max_size=8
)


def _make_fd(kind: str, keep: list[Any]) -> int:
    if kind == "null":
        return os.open("/dev/null", os.O_RDWR)
    if kind == "null-ro":
        return os.open("/dev/null", os.O_RDONLY)
    if kind == "dir":
        return os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    if kind == "pipe":
        r, w = os.pipe()
        keep.append(r)
        return w
    a, b = socket.socketpair()
    keep += [a, b]
    return os.dup(a.fileno())


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelperProcess]:
    with HelperProcess(ARGV, str(tmp_path_factory.mktemp("fuzz"))) as proc:
        assert served(proc.path)
        yield proc


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=_CONVERSATIONS, read_replies=st.booleans())
def test_fuzzed_input_never_hurts_the_daemon(
    fuzz_target: HelperProcess, conversation: list[tuple[bytes, list[str]]], read_replies: bool
) -> None:
    pid = fuzz_target.pid
    baseline = stable_fd_count(pid)
    keep: list[Any] = []
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(fuzz_target.path)
    sock.settimeout(0.2)
    try:
        for data, kinds in conversation:
            fds = [_make_fd(kind, keep) for kind in kinds]
            try:
                if data and fds:
                    socket.send_fds(sock, [data], fds)
                elif data:
                    sock.sendall(data)
            except OSError:
                break
            finally:
                for fd in fds:
                    os.close(fd)
        if read_replies:
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
    finally:
        sock.close()
        for item in keep:
            item.close() if hasattr(item, "close") else os.close(item)
    assert fuzz_target.proc is not None and fuzz_target.proc.poll() is None, "the daemon died"
    assert settle_fd_count(pid, baseline) == baseline, "the daemon leaked fds"
    assert served(fuzz_target.path)
