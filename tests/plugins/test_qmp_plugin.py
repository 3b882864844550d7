# SPDX-License-Identifier: MIT
"""The qompr-qmp plugin, pip-installed, against real QEMU: events, object-add/del, libvirt's
reaction to PR_MANAGER_STATUS_CHANGED, and ``qompr qmp ...`` in a subprocess.

What QEMU 7.2 does here (checked with the real binary): ``object-add`` of a
pr-manager-helper emits connected=true before it answers; a helper that hangs up during the
handshake makes ``object-add`` fail with "Unexpected end-of-file before all data were read"
after emitting connected=false for the new id; ``object-del`` emits nothing; a helper that
drops an established connection goes unnoticed (still connected=true) until QEMU next
talks to it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import pytest

if TYPE_CHECKING:
    from qompr_qmp import Recovery

    from qompr.embed import HelperSupervisor

    def _supervisor_is_a_recovery(supervisor: HelperSupervisor) -> Recovery:
        return supervisor  # mypy: the core's supervisor fits the plugin's Recovery protocol


pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "qompr-qmp"
FORWARD = ROOT / "plugins" / "qompr-forward"
QEMU = ["qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none", "-S"]
MANAGED = "pr-helper0"
UNMANAGED = "pr-helper-libvirt-1-storage"
EOF_DURING_HANDSHAKE = "Unexpected end-of-file before all data were read"


def _have_qemu_qmp() -> bool:
    try:
        return importlib.util.find_spec("qemu.qmp") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def qmp_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the plugin (and qemu.qmp, unless present) into a directory of its own,
    and make it importable in this process too.  Another plugin (qompr-forward) is installed
    beside it: the tests must not depend on being the only or the last one."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed: run scripts/run-tests to install it")
    site = tmp_path_factory.mktemp("qmp-site")
    packages = [str(PLUGIN), str(FORWARD)] + ([] if _have_qemu_qmp() else ["qemu.qmp>=0.0.6"])
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--target", str(site), *packages],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield site
    sys.path.remove(str(site))


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A short directory: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="qqmp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Helper:
    """A fake qemu-pr-helper.  ``ok``: send 4 zero feature bytes, read QEMU's 4, keep the
    connection (until :meth:`drop`).  ``close``: hang up at once, during the handshake."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        self.mode = mode
        self.handshakes = 0
        self._conns: list[socket.socket] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self.mode == "close":
                conn.close()
                continue
            conn.settimeout(5)
            conn.sendall(b"\0\0\0\0")
            got = b""
            while len(got) < 4:
                chunk = conn.recv(4 - len(got))
                if not chunk:
                    break
                got += chunk
            if got == b"\0\0\0\0":
                self.handshakes += 1
            self._conns.append(conn)

    def drop(self) -> None:
        """Hang up every established connection (QEMU does not notice until it talks)."""
        for conn in self._conns:
            conn.close()
        self._conns.clear()

    def close(self) -> None:
        self.drop()
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def helpers(tmp: Path) -> Iterator[dict[str, Helper]]:
    made = {name: Helper(tmp / f"{name}.sock", name.rstrip("0123456789")) for name in
            ("ok", "ok2", "close")}  # fmt: skip
    yield made
    for helper in made.values():
        helper.close()


def _listening(paths: list[Path]) -> bool:
    """Whether every unix socket in *paths* is listening (``__SO_ACCEPTCON`` in the flags
    column of ``/proc/net/unix``)."""
    wanted = {str(path) for path in paths}
    with open("/proc/net/unix") as table:
        next(table)  # the header
        for line in table:
            fields = line.split()
            if len(fields) >= 8 and int(fields[3], 16) & 0x10000:
                wanted.discard(fields[7])
    return not wanted


class Qemu:
    """qemu-system-x86_64 with no machine, paused, and one QMP unix socket per name."""

    def __init__(self, tmp: Path, *args: str, qmp: tuple[str, ...] = ("qmp",)) -> None:
        self.qmp = [tmp / f"{name}.sock" for name in qmp]
        for path in self.qmp:
            path.unlink(missing_ok=True)
        argv = [*QEMU, *args]
        for path in self.qmp:
            argv += ["-qmp", f"unix:{path},server=on,wait=off"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # QEMU binds each socket, then listens: the file exists a moment before connecting
        # works (a connect in between is refused).  Wait for listening without connecting:
        # a probe would take the monitor's one client slot.
        deadline = time.monotonic() + 30
        while not _listening(self.qmp):
            if self.proc.poll() is not None:
                pytest.fail(f"QEMU exited: {self.proc.communicate()[1].decode()}")
            assert time.monotonic() < deadline, "QEMU did not listen on its QMP sockets"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def qemus() -> Iterator[list[Qemu]]:
    """Every QEMU a test starts (append it here) is stopped afterwards."""
    started: list[Qemu] = []
    yield started
    for qemu in started:
        qemu.stop()


class Recorder:
    """A recovery (duck-typed like ``qompr.embed.HelperSupervisor``) that records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def handle_status_changed(self, id: str, connected: bool) -> None:
        self.calls.append((id, connected))


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_object_add_del_and_events_from_real_qemu(
    qmp_site: Path, tmp: Path, helpers: dict[str, Helper], qemus: list[Qemu]
) -> None:
    from qompr_qmp import PrManagerStatus
    from qompr_qmp import QmpBridge
    from qompr_qmp import QmpCommandError

    qemu = Qemu(tmp)
    qemus.append(qemu)

    async def run() -> None:
        bridge = QmpBridge(qemu.qmp[0])
        await bridge.connect()
        assert bridge.connected
        events = bridge.events()
        assert await bridge.query_pr_managers() == []

        await bridge.object_add_pr_helper("h1", helpers["ok"].path)
        assert await asyncio.wait_for(anext(events), 5) == PrManagerStatus("h1", True)
        await _until(lambda: helpers["ok"].handshakes == 1)  # QEMU did answer the helper
        assert await bridge.query_pr_managers() == [{"id": "h1", "connected": True}]

        # The helper hangs up during the handshake: object-add fails, QEMU reports the
        # disconnect of an object it then does not keep.
        with pytest.raises(QmpCommandError) as failed:
            await bridge.object_add_pr_helper("h2", helpers["close"].path)
        assert (failed.value.command, failed.value.error_class) == ("object-add", "GenericError")
        assert failed.value.message == EOF_DURING_HANDSHAKE
        assert await asyncio.wait_for(anext(events), 5) == PrManagerStatus("h2", False)
        assert await bridge.query_pr_managers() == [{"id": "h1", "connected": True}]

        # A helper that drops its connection goes unnoticed: QEMU has not talked to it.
        helpers["ok"].drop()
        await asyncio.sleep(0.2)
        assert await bridge.query_pr_managers() == [{"id": "h1", "connected": True}]

        await bridge.object_del("h1")
        assert await bridge.query_pr_managers() == []
        with pytest.raises(QmpCommandError, match="^object 'h1' not found$"):
            await bridge.object_del("h1")

        # An unreachable helper socket: object-add fails without an event.
        with pytest.raises(QmpCommandError, match="Failed to connect to '.*none.sock': No such"):
            await bridge.object_add_pr_helper("h4", tmp / "none.sock")
        # Neither object-del nor that emitted an event: the next one is the next object-add's.
        await bridge.object_add_pr_helper("h3", helpers["ok2"].path)
        assert await asyncio.wait_for(anext(events), 5) == PrManagerStatus("h3", True)

        # QEMU quits: the event stream ends, commands fail cleanly.
        await bridge.execute("quit")
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 10)
        assert not bridge.connected
        await bridge.disconnect()

    asyncio.run(run())


def test_watch_reacts_like_libvirt(
    qmp_site: Path, tmp: Path, helpers: dict[str, Helper], qemus: list[Qemu]
) -> None:
    from qompr_qmp import PrManagerStatus
    from qompr_qmp import QmpBridge
    from qompr_qmp import QmpCommandError

    # Two QMP sockets: one for the watcher (as libvirt holds one), one to act on QEMU.
    managed = f"pr-manager-helper,id={MANAGED},path={helpers['ok'].path}"
    qemu = Qemu(tmp, "-object", managed, qmp=("watch", "ctl"))
    qemus.append(qemu)
    recovery = Recorder()
    seen: list[PrManagerStatus] = []
    checks: list[list[dict[str, Any]]] = []

    async def run() -> None:
        watcher = QmpBridge(qemu.qmp[0])
        watching = asyncio.create_task(
            watcher.watch(recovery, reconnect_delay=0.05, on_event=seen.append,
                          on_check=checks.append)
        )  # fmt: skip
        await _until(lambda: len(checks) == 1)
        assert checks == [[{"id": MANAGED, "connected": True}]]
        assert recovery.calls == []

        ctl = QmpBridge(qemu.qmp[1])
        await ctl.connect()
        # Another manager loses its helper: not ours, ignored.
        with pytest.raises(QmpCommandError, match=EOF_DURING_HANDSHAKE):
            await ctl.object_add_pr_helper(UNMANAGED, helpers["close"].path)
        # A connect: ignored.
        await ctl.object_add_pr_helper("pr-helper1", helpers["ok2"].path)
        # The managed helper is replaced by one that hangs up during the handshake:
        # object-del emits nothing, the failed object-add emits pr-helper0 connected=false.
        await ctl.object_del(MANAGED)
        with pytest.raises(QmpCommandError, match=EOF_DURING_HANDSHAKE):
            await ctl.object_add_pr_helper(MANAGED, helpers["close"].path)
        # The helper is back (the recovery's job) and is hot-plugged again: a connect of
        # the managed alias, ignored.
        await ctl.object_add_pr_helper(MANAGED, helpers["ok"].path)
        await _until(lambda: len(seen) == 4)
        assert seen == [
            PrManagerStatus(UNMANAGED, False),
            PrManagerStatus("pr-helper1", True),
            PrManagerStatus(MANAGED, False),
            PrManagerStatus(MANAGED, True),
        ]
        assert recovery.calls == [(MANAGED, False)]

        # QEMU goes away; a new one on the same QMP socket lacks pr-helper0: at reconnect
        # the watcher finds it missing and recovers.
        await ctl.execute("quit")
        await ctl.disconnect()
        qemu.stop()
        qemus.append(Qemu(tmp, qmp=("watch",)))
        await _until(lambda: len(checks) == 2)
        assert checks[1] == []
        await _until(lambda: len(recovery.calls) == 2)
        assert recovery.calls == [(MANAGED, False), (MANAGED, False)]
        assert not watching.done()
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        await watcher.disconnect()

    asyncio.run(run())


def test_watch_without_reconnect_returns_when_qemu_quits(
    qmp_site: Path, tmp: Path, helpers: dict[str, Helper], qemus: list[Qemu]
) -> None:
    from qompr_qmp import QmpBridge
    from qompr_qmp import QmpConnectError

    qemu = Qemu(tmp, "-object", f"pr-manager-helper,id={MANAGED},path={helpers['ok'].path}")
    qemus.append(qemu)
    recovery = Recorder()

    async def run() -> None:
        with pytest.raises(QmpConnectError, match="No such file or directory"):
            await QmpBridge(tmp / "missing.sock").watch(recovery)
        bridge = QmpBridge(qemu.qmp[0])
        await bridge.connect()
        watching = asyncio.create_task(bridge.watch(recovery, managed_alias="other0"))
        # The managed alias "other0" is missing at connect: one recovery (pr-helper0,
        # connected, is not ours under this configuration).
        await _until(lambda: recovery.calls)
        qemu.proc.terminate()
        await asyncio.wait_for(watching, 10)  # returns: no reconnect_delay
        assert recovery.calls == [("other0", False)]
        assert not bridge.connected

    asyncio.run(run())


def test_sync_helpers_and_one_client_per_qmp_socket(
    qmp_site: Path, tmp: Path, helpers: dict[str, Helper], qemus: list[Qemu]
) -> None:
    from qompr_qmp import QmpBridge
    from qompr_qmp import QmpCommandError
    from qompr_qmp import QmpConnectError
    from qompr_qmp import add_pr_helper
    from qompr_qmp import delete_object
    from qompr_qmp import list_pr_managers

    qemu = Qemu(tmp)
    qemus.append(qemu)
    sock = qemu.qmp[0]
    add_pr_helper(sock, "h1", helpers["ok"].path)
    assert list_pr_managers(sock) == [{"id": "h1", "connected": True}]
    with pytest.raises(QmpCommandError, match="Failed to connect to '.*none.sock'"):
        add_pr_helper(sock, "h2", tmp / "none.sock")
    delete_object(sock, "h1")
    assert list_pr_managers(sock) == []

    async def run() -> None:
        async with QmpBridge(sock) as first:
            await first.connect()
            # QEMU accepts a second client on the same -qmp socket but does not greet it.
            second = QmpBridge(sock, timeout=0.5)
            with pytest.raises(QmpConnectError, match="did not greet within 0.5 s") as slow:
                await second.connect()
            assert slow.value.hint is not None and "one client" in slow.value.hint
            assert not second.connected
        # The first one gone, the second one gets its turn.
        await second.connect()
        assert await second.query_pr_managers() == []
        await second.disconnect()

    asyncio.run(run())


def _read_lines(fd: int, count: int, timeout: float = 20.0) -> list[str]:
    """Read *count* lines from a pipe, unbuffered (select() and file buffers do not mix)."""
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"timed out; read {data!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"end of file; read {data!r}"
        data += chunk
    return data.decode().splitlines()


def _qompr(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qompr", *args],
        capture_output=True, text=True, env=_env(site), timeout=30, check=False,
    )  # fmt: skip


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QOMPR_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(site)
    return env


def test_cli(qmp_site: Path, tmp: Path, helpers: dict[str, Helper], qemus: list[Qemu]) -> None:
    qemu = Qemu(tmp, qmp=("watch", "ctl"))
    qemus.append(qemu)
    ctl = str(qemu.qmp[1])

    # Found by name: other plugins installed where the tests run may come after it.
    plugins = {p["name"]: p for p in json.loads(_qompr(qmp_site, "plugins", "--json").stdout)}
    assert {"name": "qmp", "hooks": ["qompr_register_commands"]}.items() <= plugins["qmp"].items()
    assert plugins["qmp"]["distribution"] == "qompr-qmp"

    watch = subprocess.Popen(
        [sys.executable, "-m", "qompr", "qmp", "watch", "--qmp", str(qemu.qmp[0]), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(qmp_site),
    )  # fmt: skip
    assert watch.stdout is not None and watch.stderr is not None
    try:
        assert _read_lines(watch.stderr.fileno(), 1) == [f"qompr: watching {qemu.qmp[0]}"]

        added = _qompr(qmp_site, "qmp", "add", "--qmp", ctl, "--id", "h1",
                       "--path", str(helpers["ok"].path))  # fmt: skip
        assert (added.returncode, added.stdout, added.stderr) == (0, "", "")
        listed = _qompr(qmp_site, "qmp", "list", "--qmp", ctl, "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == [{"id": "h1", "connected": True}]
        assert _qompr(qmp_site, "qmp", "list", "--qmp", ctl).stdout == "h1 connected\n"

        refused = _qompr(qmp_site, "qmp", "add", "--qmp", ctl, "--id", "h2",
                         "--path", str(helpers["close"].path))  # fmt: skip
        assert (refused.returncode, refused.stderr) == (1, f"qompr: {EOF_DURING_HANDSHAKE}\n")

        deleted = _qompr(qmp_site, "qmp", "del", "--qmp", ctl, "--id", "h1")
        assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
        again = _qompr(qmp_site, "qmp", "del", "--qmp", ctl, "--id", "h1")
        assert (again.returncode, again.stderr) == (1, "qompr: object 'h1' not found\n")
        assert _qompr(qmp_site, "qmp", "list", "--qmp", ctl).stdout == ""

        # The watcher printed the two events as JSON lines; interrupt it.
        lines = _read_lines(watch.stdout.fileno(), 2)
        assert [json.loads(line) for line in lines] == [
            {"id": "h1", "connected": True},
            {"id": "h2", "connected": False},
        ]
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert (watch.returncode, out, err) == (0, b"", b"")

    missing = _qompr(qmp_site, "qmp", "list", "--qmp", str(tmp / "nope.sock"))
    assert missing.returncode == 1
    assert missing.stderr == (
        f"qompr: Failed to connect to QMP socket '{tmp / 'nope.sock'}': No such file or directory\n"
    )
