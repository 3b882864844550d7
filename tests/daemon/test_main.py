# SPDX-License-Identifier: MIT
"""The ``qompr-pr-helper`` program: options, start-up, signals, pid file, socket activation,
sd_notify, backends.  (Messages are compared with the real qemu-pr-helper in
tests/interop/test_helper_cli.py.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qompr.daemon._options import DEFAULT_PIDFILE
from qompr.daemon._options import DEFAULT_SOCKET
from qompr.daemon._options import parse_args
from qompr.daemon.main import main
from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import pr_out
from qompr.testing import request
from qompr.testing import wait_for_socket

PY = [sys.executable, "-m", "qompr.daemon.main"]
KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]


def daemon(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> HelperProcess:
    return HelperProcess([*PY, *KEEP, *args], str(tmp_path), env)


def test_help_and_version_go_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qompr-pr-helper", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: qompr-pr-helper [OPTIONS] FILE\n")
    assert f"(default '{DEFAULT_SOCKET}')" in out and f"(default '{DEFAULT_PIDFILE}')" in out
    assert main(["qompr-pr-helper", "--version"]) == 0
    assert capsys.readouterr().out.startswith("qompr-pr-helper 0.1.0 (qompr)\n")


def test_options_act_in_order_like_getopt(capsys: pytest.CaptureFixture[str]) -> None:
    # -V is acted on before the bad option behind it is even looked at.
    assert main(["qompr-pr-helper", "-V", "--bogus"]) == 0
    assert main(["qompr-pr-helper", "--bogus", "-V"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "qompr-pr-helper: unrecognized option '--bogus'\n"
        "qompr-pr-helper: Try `qompr-pr-helper --help' for more information.\n"
    )


def test_parse_args_spellings() -> None:
    opts = parse_args(
        ["p", "-vvd", "-k/run/x.sock", "--pid=/run/x.pid", "-u", "0", "--group=0", "operand",
         "--allow-uid=1,2", "--allow-gid", "3", "--backend", "pr-manager-emulated,id=e",
         "--plugin=a,b", "-q", "-T", "enable=foo", "--max-workers=3", "--log-format=json"]
    )  # fmt: skip
    assert (opts.verbosity, opts.daemonize, opts.socket_path, opts.pidfile) == (
        2, True, "/run/x.sock", "/run/x.pid"
    )  # fmt: skip
    assert (opts.uid, opts.gid, opts.quiet) == (0, 0, True)
    assert (opts.allow_uids, opts.allow_gids) == ([1, 2], [3])
    assert opts.backend == ["pr-manager-emulated,id=e"]
    assert (opts.plugins, opts.max_workers, opts.log_format) == (["a", "b"], 3, "json")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_stop_it_and_the_socket_file_goes(tmp_path: Path, sig: int) -> None:
    helper = daemon(tmp_path).start()
    with connected(helper.path) as sock:
        fd = os.open("/dev/null", os.O_RDWR)
        try:
            assert request(sock, pr_in(), fd)[0] == 2
        finally:
            os.close(fd)
    status, err = helper.stop(sig)
    assert status == 0, err
    assert not os.path.exists(helper.path)


def test_an_old_file_at_the_socket_path_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "helper.sock").write_text("stale")
    with daemon(tmp_path) as helper, connected(helper.path):
        pass


def test_pidfile_is_written_locked_and_left_behind(tmp_path: Path) -> None:
    pidfile = tmp_path / "helper.pid"
    with daemon(tmp_path, "-f", str(pidfile)) as helper:
        # The socket listens before the pid file is written (qemu-pr-helper's order too), so
        # a ready socket does not mean a written pid file yet: wait for the file's newline.
        deadline = time.monotonic() + 20
        while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
            assert time.monotonic() < deadline, "the pid file was never written"
            time.sleep(0.01)
        assert pidfile.read_text() == f"{helper.pid}\n"
        assert oct(pidfile.stat().st_mode & 0o777) == "0o600"
        second = subprocess.run(
            [*PY, *KEEP, "-k", str(tmp_path / "other.sock"), "-f", str(pidfile)],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr == (
            "qompr-pr-helper: Cannot lock pid file: Resource temporarily unavailable\n"
        )
    assert pidfile.exists()  # QEMU leaves it too


def test_daemonize_detaches_and_writes_the_childs_pid(tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    sock = tmp_path / "d.sock"
    done = subprocess.run(
        [*PY, *KEEP, "-d", "-k", str(sock), "-f", str(pidfile)],
        capture_output=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().endswith("\n"):
            break
        time.sleep(0.02)
    pid = int(pidfile.read_text())
    try:
        wait_for_socket(str(sock))
        assert os.getsid(pid) == pid  # a new session
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    finally:
        os.kill(pid, signal.SIGTERM)
    for _ in range(500):  # the daemon is nobody's child: wait for its clean-up instead
        if not sock.exists():
            break
        time.sleep(0.01)
    assert not sock.exists()


def test_socket_activation(tmp_path: Path) -> None:
    path = str(tmp_path / "activated.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    code = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'\n"
        "from qompr.daemon.main import main\n"
        "sys.exit(main(['qompr-pr-helper', *sys.argv[2:]]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(listener.fileno()), *KEEP],
        pass_fds=[listener.fileno()], stderr=subprocess.PIPE,
    )  # fmt: skip
    listener.close()
    try:
        with connected(path) as sock:
            fd = os.open("/dev/null", os.O_RDWR)
            try:
                assert request(sock, pr_out(24), fd, bytes(24))[0] == 2
            finally:
                os.close(fd)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert os.path.exists(path)  # systemd's socket is not ours to remove


def test_sd_notify_ready_and_stopping(tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    helper = daemon(tmp_path, env={"NOTIFY_SOCKET": str(tmp_path / "notify")}).start()
    ready = notify.recv(4096).decode()
    assert "READY=1" in ready.split("\n")
    assert f"MAINPID={helper.pid}" in ready
    helper.stop()
    assert "STOPPING=1" in notify.recv(4096).decode().split("\n")
    notify.close()


def test_sigusr1_logs_statistics(tmp_path: Path) -> None:
    # Not a Python repr, and not a warning (issue 15): key=value pairs, logged whatever
    # -v/-q say (here the default, warnings only).
    helper = daemon(tmp_path).start()
    with connected(helper.path):
        helper.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        time.sleep(0.3)
    _, err = helper.stop()
    stats = next(line for line in err.splitlines() if "statistics:" in line)
    assert "connections_accepted=" in stats and "connections_open=1" in stats
    assert "ServerStatistics(" not in err
    assert f"pid={os.getpid()} uid={os.getuid()} gid={os.getgid()} requests=0" in err


def test_sigusr1_statistics_follow_the_json_log_format(tmp_path: Path) -> None:
    helper = daemon(tmp_path, "--log-format=json").start()
    with connected(helper.path):
        helper.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        time.sleep(0.3)
    _, err = helper.stop()
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    stats = next(r for r in records if "statistics" in r)
    assert stats["level"] == "info" and stats["statistics"]["connections_open"] == 1
    conn = next(r for r in records if "connection" in r)
    assert conn["connection"]["peer"] == {
        "pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()
    }  # fmt: skip


def test_backend_object(tmp_path: Path) -> None:
    state = tmp_path / "pr.db"
    backend = f"pr-manager-emulated,id=emu0,state={state}"
    with daemon(tmp_path, "--backend", backend) as helper, connected(helper.path) as sock:
        fd = os.open(str(tmp_path), os.O_RDONLY)
        rw = os.open(str(state), os.O_RDWR)
        try:
            register = pr_out(24)
            key = bytes(8) + (0xABC).to_bytes(8, "big") + bytes(8)
            assert request(sock, register, rw, key)[0] == 0
            status, _, data = request(sock, pr_in(255), rw)
            assert status == 0
            assert data[4:8] == (8).to_bytes(4, "big") and data[8:16] == key[8:16]
            # qemu-pr-helper's read-only check applies whatever the backend.
            assert request(sock, register, fd, key)[0] == 2
        finally:
            os.close(fd)
            os.close(rw)


def test_backend_errors_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qompr-pr-helper", "--backend", "no-such-type,id=x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qompr-pr-helper: --backend no-such-type,id=x: ")
    assert main(["qompr-pr-helper", "--backend", "pr-manager-emulated,help"]) == 0
    assert capsys.readouterr().out.startswith("pr-manager-emulated options:\n")


def test_plugins_are_never_loaded_unless_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["qompr-pr-helper", "--plugin", "qompr-no-such-plugin",
                 "--backend", "pr-manager-emulated,id=e"])  # fmt: skip
    assert code == 1
    assert "qompr-no-such-plugin" in capsys.readouterr().err
    assert main(["qompr-pr-helper", "--plugin=qompr-no-such-plugin", "-k", "/nonexistent/x"]) == 1
    assert "plugin(s) not installed" in capsys.readouterr().err


def test_processes_share_the_socket_and_stop_together(tmp_path: Path) -> None:
    helper = daemon(tmp_path, "--processes=2").start()
    children: list[int] = []
    for _ in range(100):
        children = [
            int(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit() and _ppid(int(pid)) == helper.pid
        ]
        if children:
            break
        time.sleep(0.02)
    assert len(children) == 1
    socks = []
    try:
        fd = os.open("/dev/null", os.O_RDWR)
        for _ in range(8):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            sock.connect(helper.path)
            socks.append(sock)
        for sock in socks:
            assert sock.recv(4) == bytes(4)
            sock.sendall(bytes(4))
            assert request(sock, pr_in(), fd)[0] == 2
        os.close(fd)
    finally:
        for sock in socks:
            sock.close()
    status, err = helper.stop()
    assert status == 0, err
    assert not os.path.exists(f"/proc/{children[0]}") or _ppid(children[0]) != helper.pid
    assert not os.path.exists(helper.path)


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def test_processes_refuse_a_backend(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["qompr-pr-helper", "--processes=2", "--backend", "pr-manager-emulated,id=e"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "qompr-pr-helper: --processes needs the SG_IO executor (no --backend)\n"
    )
