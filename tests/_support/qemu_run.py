# SPDX-License-Identifier: MIT
"""Run one QEMU command line of ``-object`` options and record what it did: exit status,
stdout, stderr and, when QEMU stayed up, every object through QMP (the corpus recorders in
``tests/corpus`` and the interop tests share it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests._support.placeholders import JsonObject
from tests._support.placeholders import JsonValue
from tests._support.placeholders import expand
from tests._support.placeholders import substitutions
from tests._support.placeholders import unexpand
from tests._support.placeholders import unexpand_json
from tests._support.qmp import QMPClient
from tests._support.qmp import QMPError
from tests._support.qmp import inspect_objects

__all__ = [
    "BASE_COMMAND",
    "DEFAULT_TIMEOUT",
    "QEMU",
    "Case",
    "qemu_env",
    "qemu_version",
    "run_case",
]

QEMU = "qemu-system-x86_64"
BASE_COMMAND: tuple[str, ...] = (
    QEMU,
    "-machine",
    "none",
    "-nodefaults",
    "-display",
    "none",
    "-S",
    "-qmp",
    "unix:@QMP@,server=on,wait=off",
)
DEFAULT_TIMEOUT = 20.0


@dataclass(frozen=True)
class Case:
    """One QEMU command line: each element of ``args`` is one ``-object`` option."""

    group: str
    name: str
    args: tuple[str, ...]
    note: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.group}/{self.name}"


def qemu_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/"}


def run_case(
    case: Case,
    tmp: Path,
    index: int,
    timeout: float,
    *,
    base_command: Sequence[str] = BASE_COMMAND,
    option: str = "-object",
    after: Sequence[str] = (),
) -> JsonObject:
    """Run one case: ``base_command``, the case's ``option ARG`` pairs, then ``after``
    (``@QMP@`` in either is the QMP socket's path)."""
    subs = substitutions(tmp)
    qmp_path = tmp / f"qmp-{index:04d}.sock"
    with contextlib.suppress(FileNotFoundError):
        qmp_path.unlink()
    qmp_sub = [("@QMP@", str(qmp_path))]
    argv = [expand(a, qmp_sub) for a in base_command]
    for arg in case.args:
        argv += [option, expand(arg, subs)]
    argv += [expand(a, qmp_sub) for a in after]
    objects: list[JsonValue] | None = None
    timed_out = False
    qmp_error: str | None = None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp, env=qemu_env()
        )
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if qmp_path.exists():
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        sock.connect(str(qmp_path))
                    except OSError:
                        sock.close()
                        time.sleep(0.01)
                        continue
                    with sock:
                        client = QMPClient(sock, max(0.1, deadline - time.monotonic()))
                        try:
                            greeting = client.read_message()
                        except (OSError, ValueError):
                            greeting = None
                        if greeting is not None:
                            # QEMU reached its main loop: every object exists.
                            try:
                                objects = inspect_objects(client)
                                client.execute("quit")
                            except (OSError, ValueError, QMPError) as exc:
                                qmp_error = f"{type(exc).__name__}: {exc}"
                    break
                time.sleep(0.01)
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "surrogateescape")
        stderr = err.read().decode("utf-8", "surrogateescape")
    with contextlib.suppress(FileNotFoundError):
        qmp_path.unlink()
    result: JsonObject = {
        "name": case.full_name,
        "group": case.group,
        "args": list(case.args),
        "note": case.note,
        "exit_status": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "stdout": unexpand(stdout, subs),
        "stderr": unexpand(stderr, subs),
        "stayed_running": objects is not None,
        "objects": unexpand_json(objects, subs) if objects is not None else None,
    }
    if qmp_error is not None:
        result["qmp_error"] = unexpand(qmp_error, subs)
    return result


def qemu_version(program: str = QEMU) -> str:
    proc = subprocess.run(
        [program, "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=qemu_env(),
        check=True,
    )
    return proc.stdout.splitlines()[0].strip()
