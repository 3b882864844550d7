# SPDX-License-Identifier: MIT
"""contrib/systemd: the units are valid, and the service command serves a socket it is given
the way systemd gives it (LISTEN_FDS=1 on fd 3, LISTEN_PID, NOTIFY_SOCKET for Type=notify)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from qompr.daemon._startup import LISTEN_BACKLOG
from qompr.embed import HelperSupervisor
from qompr.embed._supervisor import BACKLOG as SUPERVISOR_BACKLOG

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_socket_unit_matches_qemu_pr_helper_socket() -> None:
    sock = _unit("qompr-pr-helper.socket")["Socket"]
    assert sock["ListenStream"] == "/run/qemu-pr-helper.sock"
    assert sock["SocketMode"] == "0600"
    assert int(sock["Backlog"]) > 1  # qemu-pr-helper's backlog of 1 drops bursts


def test_one_backlog_everywhere() -> None:
    backlog = int(_unit("qompr-pr-helper.socket")["Socket"]["Backlog"])
    assert backlog == LISTEN_BACKLOG == SUPERVISOR_BACKLOG == 4096


def test_the_service_finds_a_pip_or_a_distribution_install() -> None:
    # No directory: systemd resolves the name in its fixed search path, /usr/local/bin (pip)
    # before /usr/bin (a package).
    for unit in ("qompr-pr-helper.service", "qompr-pr-helper.service.d/emulated.conf"):
        commands = [c for c in _unit(unit)["Service"]["ExecStart"].splitlines() if c.strip()]
        assert shlex.split(commands[-1])[0] == "qompr-pr-helper", unit


def test_a_state_file_goes_where_protect_system_strict_lets_it_write() -> None:
    service = _unit("qompr-pr-helper.service")["Service"]
    assert service["ProtectSystem"] == "strict"
    state_dir = f"/var/lib/{service['StateDirectory']}"
    dropin = _unit("qompr-pr-helper.service.d/emulated.conf")["Service"]["ExecStart"]
    backend = shlex.split(dropin.splitlines()[-1])[2]
    state = dict(p.split("=", 1) for p in backend.split(",")[1:])["state"]
    assert Path(state).parent == Path(state_dir)


def test_service_unit_is_hardened_and_notifies() -> None:
    service = _unit("qompr-pr-helper.service")["Service"]
    assert service["Type"] == "notify"  # the daemon sends READY=1
    assert service["Restart"] == "always"
    for key in ("ProtectSystem", "PrivateTmp", "RestrictAddressFamilies", "NoNewPrivileges"):
        assert key in service, key
    assert service["RestrictAddressFamilies"] == "AF_UNIX"
    assert "-k" not in shlex.split(service["ExecStart"])  # the socket comes from systemd


def test_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("LOUD SKIP: systemd-analyze is not installed; unit syntax not verified")
    # Point ExecStart at this checkout's daemon so verify can check the binary exists.
    helper = Path(sys.executable).with_name("qompr-pr-helper")
    (tmp_path / "qompr-pr-helper.service.d").mkdir()
    for name in (
        "qompr-pr-helper.socket",
        "qompr-pr-helper.service",
        "qompr-pr-helper.service.d/emulated.conf",
    ):
        text = (
            (UNITS / name).read_text().replace("ExecStart=qompr-pr-helper", f"ExecStart={helper}")
        )
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [analyze, "verify", str(tmp_path / "qompr-pr-helper.socket"),
         str(tmp_path / "qompr-pr-helper.service")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "unit", ["qompr-pr-helper.service", "qompr-pr-helper.service.d/emulated.conf"]
)
def test_service_command_serves_an_activated_socket(tmp_path: Path, unit: str) -> None:
    exec_start = _unit(unit)["Service"]["ExecStart"].splitlines()[-1]
    exec_start = exec_start.replace("/var/lib/qompr", str(tmp_path))  # the StateDirectory
    argv = shlex.split(exec_start)
    assert argv[0] == "qompr-pr-helper"
    command = [str(Path(sys.executable).with_name("qompr-pr-helper")), *argv[1:]]
    # HelperSupervisor passes the socket exactly as systemd does.
    sup = HelperSupervisor(str(tmp_path / "pr.sock"), command=command)
    sup.start()
    try:
        assert sup.wait_ready(30), "no READY=1 from the service command"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(sup.socket_path)
            assert sock.recv(4) == b"\0\0\0\0"  # qemu-pr-helper's feature negotiation
        if "state=" in exec_start:
            assert (tmp_path / "pr.db").exists()  # the state file, in the StateDirectory
    finally:
        sup.stop()
