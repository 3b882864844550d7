# SPDX-License-Identifier: MIT
"""The control interface (``--control``): QMP's shape, statistics as JSON and Prometheus
text, and its bounds."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qompr.daemon._control import MAX_LINE
from qompr.daemon._control import CommandError
from qompr.daemon._control import ControlServer
from qompr.daemon._control import ControlSession
from qompr.daemon._control import Handler
from qompr.daemon._loop import Loop
from qompr.daemon.main import main
from qompr.testing import HelperProcess
from qompr.testing import connected
from qompr.testing import pr_in
from qompr.testing import request
from qompr.testing import wait_for_socket

KEEP = [] if os.geteuid() == 0 else ["--keep-privileges"]


def answers(session: ControlSession, *lines: str) -> list[dict[str, Any]]:
    out = session.receive("".join(line + "\n" for line in lines).encode())
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.fixture
def session() -> ControlSession:
    def fail(arguments: dict[str, Any]) -> Any:
        raise CommandError("it failed", "DeviceNotActive")

    commands: dict[str, Handler] = {
        "query-answer": lambda arguments: {"answer": 42, **arguments},
        "fail": fail,
    }
    return ControlSession(commands, (1, 2, 3), "qompr-pr-helper 1.2.3")


def test_greeting_and_negotiation_are_qmps(session: ControlSession) -> None:
    assert json.loads(session.greeting()) == {
        "QMP": {
            "version": {
                "qemu": {"major": 1, "minor": 2, "micro": 3},
                "package": "qompr-pr-helper 1.2.3",
            },
            "capabilities": [],
        }
    }
    assert session.greeting().endswith(b"\r\n")
    assert answers(session, '{"execute": "query-answer"}') == [
        {
            "error": {
                "class": "CommandNotFound",
                "desc": "Expecting capabilities negotiation with 'qmp_capabilities'",
            }
        }
    ]
    assert answers(session, '{"execute": "qmp_capabilities", "id": 7}') == [{"return": {}, "id": 7}]
    assert answers(session, '{"execute": "qmp_capabilities"}')[0]["error"] == {
        "class": "CommandNotFound",
        "desc": "Capabilities negotiation is already complete, command ignored",
    }


def test_commands_errors_and_framing(session: ControlSession) -> None:
    answers(session, '{"execute": "qmp_capabilities"}')
    got = answers(
        session,
        '{"execute": "query-answer", "arguments": {"x": 1}, "id": "a"}',
        '{"execute": "query-commands"}',
        '{"execute": "fail"}',
        '{"execute": "nope"}',
        "[1]",
        "{bad",
        '{"arguments": {}}',
        '{"execute": "query-answer", "extra": 1}',
        '{"execute": "query-commands", "arguments": {"x": 1}}',
    )
    assert got[0] == {"return": {"answer": 42, "x": 1}, "id": "a"}
    assert got[1] == {
        "return": [
            {"name": "fail"},
            {"name": "qmp_capabilities"},
            {"name": "query-answer"},
            {"name": "query-commands"},
        ]
    }
    assert got[2] == {"error": {"class": "DeviceNotActive", "desc": "it failed"}}
    assert got[3] == {
        "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}
    }
    assert got[4]["error"]["desc"] == "QMP input must be a JSON object"
    assert got[5]["error"]["desc"].startswith("JSON parse error, ")
    assert got[6]["error"]["desc"] == "QMP input lacks member 'execute'"
    assert got[7]["error"]["desc"] == "QMP input member 'extra' is unexpected"
    assert got[8]["error"]["desc"] == "Parameter 'x' is unexpected"
    # a line in pieces is answered once whole
    assert session.receive(b'{"execute": "query-') == b""
    assert json.loads(session.receive(b'answer"}\n'))["return"]["answer"] == 42
    assert not session.broken
    session.receive(b"x" * (MAX_LINE + 1))
    assert session.broken  # the server closes after the answer


def test_a_command_name_is_registered_once() -> None:
    loop = Loop()
    try:
        a, b = socket.socketpair()
        control = ControlServer(a, loop)
        control.register("query-x", lambda arguments: None)
        for name in ("query-x", "qmp_capabilities", "query-commands"):
            with pytest.raises(ValueError, match="already registered"):
                control.register(name, lambda arguments: None)
        a.close()
        b.close()
    finally:
        loop.close()


class Control:
    """A line-oriented client of a control socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.greeting = json.loads(self.file.readline())

    def command(self, name: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        return json.loads(self.file.readline())

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[tuple[HelperProcess, str]]:
    control = str(tmp_path / "control.sock")
    with HelperProcess.qompr(*KEEP, f"--control={control}", workdir=str(tmp_path)) as proc:
        wait_for_socket(control)  # bound after the helper socket
        yield proc, control
    assert not os.path.exists(control)  # removed on the way out


def test_query_stats_as_json_and_prometheus(helper: tuple[HelperProcess, str]) -> None:
    proc, path = helper
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    fd = os.open(os.devnull, os.O_RDWR)
    control = Control(path)
    try:
        assert control.greeting["QMP"]["version"]["package"].startswith("qompr-pr-helper ")
        assert control.command("qmp_capabilities") == {"return": {}}
        with connected(proc.path) as sock:
            assert request(sock, pr_in(), fd)[0] == 2
            stats = control.command("query-stats")["return"]
            assert stats["server"]["requests"] == 1
            assert stats["server"]["check_conditions"] == 1
            assert stats["server"]["connections_open"] == 1
            (conn,) = stats["connections"]
            assert conn["requests"] == 1 and conn["peer"]["pid"] == os.getpid()
            text = control.command("query-stats", format="prometheus")["return"]["text"]
        assert "# TYPE qompr_pr_helper_requests_total counter\n" in text
        assert "\nqompr_pr_helper_requests_total 1\n" in text
        assert "\nqompr_pr_helper_connections_open 1\n" in text
        assert f'qompr_pr_helper_connection_requests_total{{connection="{conn["id"]}",' in text
        bad = control.command("query-stats", format="xml")
        assert bad["error"]["desc"] == "Parameter 'format' does not accept value 'xml'"
    finally:
        control.close()
        os.close(fd)


def test_control_path_must_be_absolute(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qompr-pr-helper", "--control=relative.sock"]) == 1
    assert capsys.readouterr().err == "qompr-pr-helper: control socket path must be absolute\n"


def test_control_socket_survives_hostile_clients(helper: tuple[HelperProcess, str]) -> None:
    proc, path = helper
    for junk in (b"\x00" * 100 + b"\n", b"[" * 5000 + b"\n", b"x" * (MAX_LINE + 10)):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    control = Control(path)
    try:
        assert control.command("qmp_capabilities") == {"return": {}}
        assert "server" in control.command("query-stats")["return"]
    finally:
        control.close()
    assert proc.proc is not None and proc.proc.poll() is None
