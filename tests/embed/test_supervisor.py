# SPDX-License-Identifier: MIT
"""Managed helpers: the supervisor keeps the socket, restarts the helper, QEMU keeps working.

Real programs: the ``qompr-pr-helper`` daemon under the supervisor, and a real
``qemu-system-x86_64 -machine none`` connected to it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.embed import HelperStartError
from qompr.embed import HelperSupervisor
from qompr.errors import StateError
from tests._support.qmp import QMPClient

HERE = Path(__file__).resolve().parent

HELPER_ARGS = ["--keep-privileges"]


def handshake(path: str, timeout: float = 10.0) -> None:
    """Connect and do the 4-byte feature negotiation; raise OSError on failure."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        got = b""
        while len(got) < 4:
            chunk = sock.recv(4 - len(got))
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "closed during handshake")
            got += chunk
        sock.sendall(b"\0\0\0\0")


def wait_for(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[HelperSupervisor]:
    sup = HelperSupervisor(
        str(tmp_path / "pr.sock"), pidfile=str(tmp_path / "pr.pid"), helper_args=HELPER_ARGS
    )
    sup.start()
    assert sup.wait_ready(30), "the helper never reported READY=1"
    yield sup
    sup.stop()


def test_socket_and_pidfile_follow_the_helper(supervisor: HelperSupervisor) -> None:
    assert supervisor.pidfile is not None
    first = supervisor.pid
    assert first is not None
    assert Path(supervisor.pidfile).read_text() == f"{first}\n"
    assert os.stat(supervisor.socket_path).st_mode & 0o777 == 0o600
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: supervisor.pid not in (None, first))
    assert Path(supervisor.pidfile).read_text() == f"{supervisor.pid}\n"
    assert supervisor.exits[0].pid == first and supervisor.exits[0].returncode == -signal.SIGKILL
    handshake(supervisor.socket_path)


def test_restart_has_no_window(supervisor: HelperSupervisor) -> None:
    connect_failures: list[OSError] = []
    dropped: list[OSError] = []
    served = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal served
        while not stop.is_set():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                try:
                    sock.connect(supervisor.socket_path)
                except OSError as exc:  # ECONNREFUSED / ENOENT: the window libvirt has
                    connect_failures.append(exc)
                    continue
                try:
                    if sock.recv(4) != b"\0\0\0\0":  # EOF: its helper was killed
                        raise ConnectionResetError(errno.ECONNRESET, "closed by a dead helper")
                    sock.sendall(b"\0\0\0\0")
                    served += 1
                except OSError as exc:
                    # Accepted by an incarnation that was then killed: that one connection
                    # is lost (reset or broken pipe), as with any helper crash.
                    dropped.append(exc)

    worker = threading.Thread(target=client)
    worker.start()
    try:
        for _ in range(3):
            assert worker.is_alive()
            before = supervisor.pid
            assert before is not None
            os.kill(before, signal.SIGKILL)
            wait_for(lambda b=before: supervisor.pid not in (None, b))
            time.sleep(0.3)
    finally:
        stop.set()
        worker.join(30)
    assert supervisor.restarts == 3
    assert served > 0
    assert connect_failures == []
    assert all(isinstance(f, (ConnectionResetError, BrokenPipeError)) for f in dropped), dropped


def test_stop_removes_socket_and_pidfile(tmp_path: Path) -> None:
    sock, pid = tmp_path / "s.sock", tmp_path / "s.pid"
    sup = HelperSupervisor(str(sock), pidfile=str(pid), helper_args=HELPER_ARGS)
    sup.start()
    assert sup.wait_ready(30)
    helper = sup.pid
    sup.stop()
    assert not sock.exists() and not pid.exists()
    assert helper is not None
    with pytest.raises(ProcessLookupError):
        os.kill(helper, 0)


def test_socket_option_is_refused() -> None:
    with pytest.raises(StateError, match="owns the socket"):
        HelperSupervisor("/tmp/x.sock", helper_args=["-k", "/tmp/y.sock"])


@pytest.mark.interop
def test_real_qemu_with_a_supervised_helper(supervisor: HelperSupervisor, tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed: run scripts/run-tests to install it")
    qmp_path = tmp_path / "qmp.sock"
    spec = f"pr-manager-helper,id=pr-helper0,path={supervisor.socket_path}"
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S",
         "-qmp", f"unix:{qmp_path},server=on,wait=off", "-object", spec],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(qmp_path.exists)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(qmp_path))
            client = QMPClient(sock, 20.0)
            client.read_message()
            client.execute("qmp_capabilities")
            assert client.execute("query-pr-managers")["return"] == [
                {"connected": True, "id": "pr-helper0"}
            ]
            for _ in range(3):
                before = supervisor.pid
                assert before is not None
                os.kill(before, signal.SIGKILL)
                wait_for(lambda b=before: supervisor.pid not in (None, b))
            # A manager added now connects to the current incarnation at once.
            reply = client.execute(
                "object-add",
                {"qom-type": "pr-manager-helper", "id": "pr-helper1",
                 "path": supervisor.socket_path},
            )  # fmt: skip
            assert reply == {"return": {}}, json.dumps(reply)
            managers: Any = client.execute("query-pr-managers")["return"]
            assert {"connected": True, "id": "pr-helper1"} in managers
            client.execute("quit")
        assert qemu.wait(20) == 0
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        assert qemu.stderr is not None
        qemu.stderr.close()


def test_a_helper_that_never_starts_is_given_up_with_its_last_words(tmp_path: Path) -> None:
    errors: list[HelperStartError] = []
    sup = HelperSupervisor(
        str(tmp_path / "pr.sock"),
        helper_args=[*HELPER_ARGS, "-u", "no-such-user-qompr"],  # exits at once, every time
        max_start_failures=3,
        on_give_up=errors.append,
    )
    sup.start()
    try:
        with pytest.raises(HelperStartError) as info:
            sup.wait_ready(60)
        assert errors == [info.value]
        assert "exited before it was ready 3 times in a row (last: status 1)" in str(info.value)
        assert "invalid user 'no-such-user-qompr'" in info.value.stderr
        assert str(info.value).endswith("invalid user 'no-such-user-qompr'")
        assert [e.returncode for e in info.value.exits] == [1, 1, 1]
        time.sleep(1.0)
        assert sup.restarts == 3  # and no more
        assert sup.pid is None
    finally:
        sup.stop()


def test_a_helper_that_was_ready_is_always_restarted(tmp_path: Path) -> None:
    sup = HelperSupervisor(str(tmp_path / "pr.sock"), helper_args=HELPER_ARGS, max_start_failures=1)
    sup.start()
    try:
        assert sup.wait_ready(30)
        for _ in range(3):  # deaths after READY=1 are not start failures
            pid = sup.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda pid=pid: sup.pid not in (None, pid))
            assert sup.wait_ready(30)
        assert sup.error is None and sup.restarts == 3
    finally:
        sup.stop()


def test_a_helper_polled_from_many_threads_is_reaped_once() -> None:
    # HelperSupervisor.pid polls from the caller's thread while the watcher polls from its
    # own: one waitpid reaps, the others must see the exit status, not ECHILD.
    from qompr.embed._supervisor import _Child

    true = shutil.which("true")
    assert true is not None
    for _ in range(100):
        child = _Child(os.posix_spawn(true, [true], dict(os.environ)))
        start = threading.Barrier(4)
        errors: list[OSError] = []

        def poll(
            child: _Child = child,
            start: threading.Barrier = start,
            errors: list[OSError] = errors,
        ) -> None:
            start.wait()
            try:
                while child.poll() is None:
                    pass
            except OSError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=poll) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == [] and child.returncode == 0
