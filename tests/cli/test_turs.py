# SPDX-License-Identifier: MIT
"""``qompr turs``: sg_turs's TEST UNIT READY through qompr's managers.

Where ``sg_turs`` (3.48, sg3_utils 1.46) is installed, the ``interop`` tests run it next to
``qompr turs`` on /dev/null, a regular file and a missing path, and on the same device answers
(the LD_PRELOAD SG_IO stand-in of tests/_support/sgio_shim.c), and require the same exit
status, stderr (but for the program name) and stdout (but for the usage text, which is
qompr's own, and the measured times of ``-t``).  Through ``pr-manager-emulated`` it must
report and clear a pending unit attention, as fence_scsi relies on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest

import qompr
from qompr.cli.main import main
from qompr.cli.sglib.sense import information
from qompr.cli.sglib.sense import progress
from qompr.managers import PRManager
from qompr.options import process
from qompr.qom import Object
from qompr.scsi import Nexus
from qompr.scsi import ScsiResult
from qompr.scsi import SenseCode
from tests._support import SGIO_SHIM_C

SG_TURS = shutil.which("sg_turs")
CC = shutil.which("cc") or shutil.which("gcc")
CLI_MAIN = sys.modules["qompr.cli.main"]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QOMPR_LOAD_PLUGINS", "")
    monkeypatch.delenv("SG3_UTILS_OLD_OPTS", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["turs", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def disk(tmp_path: Path) -> str:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(4096))
    return str(path)


# -- sense fields ------------------------------------------------------------------------------


def _fixed(
    key: int, asc: int, ascq: int, *, info: int | None = None, sks: int | None = None
) -> bytes:
    sense = bytearray(18)
    sense[0] = 0x70 | (0x80 if info is not None else 0)
    sense[2], sense[7], sense[12], sense[13] = key, 10, asc, ascq
    if info is not None:
        sense[3:7] = info.to_bytes(4, "big")
    if sks is not None:
        sense[15] = 0x80
        sense[16:18] = sks.to_bytes(2, "big")
    return bytes(sense)


def _descriptor(key: int, asc: int, ascq: int, *descriptors: bytes) -> bytes:
    body = b"".join(descriptors)
    return bytes((0x72, key, asc, ascq, 0, 0, 0, len(body))) + body


def test_information_field() -> None:
    assert information(_fixed(2, 4, 1, info=5000)) == 5000
    assert information(_fixed(2, 4, 1)) is None  # VALID clear
    info_desc = bytes((0x00, 0x0A, 0x80, 0)) + (7000).to_bytes(8, "big")
    assert information(_descriptor(2, 4, 1, info_desc)) == 7000
    assert information(_descriptor(2, 4, 1, bytes((0x00, 0x0A, 0x00, 0)) + bytes(8))) is None
    assert information(b"\x70") is None


def test_progress_field() -> None:
    assert progress(_fixed(2, 4, 4, sks=0x8000)) == 0x8000
    assert progress(_fixed(0, 0, 0x16, sks=0x4000)) == 0x4000
    assert progress(_fixed(6, 0x29, 0, sks=0x8000)) is None  # not NO SENSE / NOT READY
    assert progress(_fixed(2, 4, 4)) is None  # SKSV clear
    sks_desc = bytes((0x02, 0x06, 0, 0, 0x80, 0x20, 0x00, 0))
    assert progress(_descriptor(2, 4, 4, sks_desc)) == 0x2000
    indication = bytes((0x0A, 0x06, 6, 0x29, 0, 0, 0x10, 0x00))
    # A progress indication descriptor counts whatever the sense key.
    assert progress(_descriptor(6, 0x29, 0, indication)) == 0x1000


# -- the command line --------------------------------------------------------------------------


def test_helper_port_without_initiator_is_refused_not_ignored(
    capsys: pytest.CaptureFixture[str], disk: str
) -> None:
    code, out, err = run(capsys, "--helper", "/run/x.sock", "--target-port", "2", disk)
    assert (code, out) == (31, "")
    assert err == "--target-port with --helper needs --initiator: the helper names the client\n"
    code, out, err = run(capsys, "--helper", "/run/x.sock", "--object", "pr-manager-emulated", disk)
    assert (code, out, err[:20]) == (31, "", "--helper and --objec")


def test_initiator_needs_a_manager(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    code, out, err = run(capsys, "--initiator", "a", disk)
    assert (code, out, err) == (
        31,
        "",
        "--initiator and --target-port need a manager (--object or --helper)\n",
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-V")
    assert (code, out) == (0, "")
    assert err == f"Version string: 3.48 20210102 (qompr {qompr.__version__})\n"


def test_help_is_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-h")
    assert (code, err) == (0, "")
    assert out.startswith("Usage: qompr turs [--delay=MS]")
    assert "--object=SPEC" in out
    code, out, _ = run(capsys, "-O", "-?")
    assert (code, out.splitlines()[0]) == (
        0,
        "Usage: qompr turs [-d=MS] [-l] [-n=NUM] [-p] [-t] [-v] [-V] DEVICE",
    )


def test_qompr_options_do_not_shadow_sg_turs_abbreviations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # "--o" is sg_turs's --old, not --object: the old syntax reads the line again and, as
    # sg_turs does, refuses "--o", which it does not know.
    code, out, err = run(capsys, "--o", "/dev/null")
    assert (code, err) == (1, "Unrecognized option: -o\n")
    assert out.startswith("Usage: qompr turs [-d=MS]")
    # qompr's own options may be abbreviated where sg_turs's table has no such name.
    code, out, err = run(capsys, "--obj=help", "/dev/null")
    assert (code, err) == (0, "")
    assert out.startswith("List of user creatable objects:\n")


# -- through pr-manager-emulated: the unit attention fence_scsi clears --------------------------


@pytest.fixture
def state(tmp_path: Path) -> Iterator[str]:
    """A state file another user holds open, so the state lives from one run to the next."""
    path = str(tmp_path / "pr.db")
    tree = qompr.new_tree(load_entrypoints=False)
    process(tree, [f"pr-manager-emulated,id=holder,state={path}"])
    yield path
    tree.object_del("holder")


def test_tur_reports_and_clears_a_pending_unit_attention(
    capsys: pytest.CaptureFixture[str], state: str, disk: str
) -> None:
    spec = f"pr-manager-emulated,id=emu0,state={state}"

    def persist(*argv: str, initiator: str) -> None:
        code = main(["persist", "--object", spec, "--initiator", initiator, *argv, disk])
        assert code == 0, (argv, capsys.readouterr())
        capsys.readouterr()

    def turs(*argv: str, initiator: str) -> tuple[int, str, str]:
        return run(capsys, "--object", spec, "--initiator", initiator, *argv, disk)

    assert turs(initiator="a") == (0, "", "")
    persist("-o", "-G", "-S", "a", initiator="a")
    persist("-o", "-G", "-S", "b", initiator="b")
    persist("-o", "-P", "-K", "b", "-S", "a", "-T", "1", initiator="b")  # b fences a
    # a's next command reports REGISTRATIONS PREEMPTED; TEST UNIT READY takes it...
    assert turs(initiator="a") == (
        6,
        "Unit attention\n",
        "test unit ready:\nFixed format, current; Sense key: Unit Attention\n"
        "Additional sense: Registrations preempted\n",
    )
    # ...so the PR IN that follows reads the keys, as after sg_turs on LIO.
    assert turs(initiator="a") == (0, "", "")
    code = main(["persist", "--object", spec, "--initiator", "a", "-k", disk])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == "  PR generation=0x3, 1 registered reservation key follows:\n    0xb\n"
    # b had no unit attention: many commands, no error.
    assert turs("-n", "3", initiator="b") == (
        0,
        "Completed 3 Test Unit Ready commands with 0 errors\n",
        "",
    )


class _NoTur(PRManager, qom_type="pr-manager-test-no-tur"):
    """A manager that keeps the contract's default TEST UNIT READY."""

    def run(
        self, fd: int, cdb: bytes, data: bytes = b"", *, nexus: Nexus | None = None
    ) -> ScsiResult:
        return ScsiResult.good()


class _NoTurPlugin:
    @qompr.hookimpl
    def qompr_register_types(self, register: Callable[[type[Object]], Any]) -> None:
        register(_NoTur)


def test_a_manager_without_tur_answers_invalid_opcode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, disk: str
) -> None:
    def with_type() -> pluggy.PluginManager:
        pm = qompr.get_plugin_manager(load_entrypoints=False)
        pm.register(_NoTurPlugin())
        return pm

    monkeypatch.setattr(CLI_MAIN, "get_plugin_manager", with_type)
    code, out, err = run(capsys, "--object", "pr-manager-test-no-tur,id=n", disk)
    # sg_turs's report of ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (a quiet category).
    assert (code, out, err) == (9, "Illegal request, Invalid opcode\n", "")


def test_object_help_and_bad_specs(capsys: pytest.CaptureFixture[str], disk: str) -> None:
    code, out, _ = run(capsys, "--object", "help", disk)
    assert code == 0 and out.startswith("List of user creatable objects:\n")
    code, out, err = run(capsys, "--object", "pr-manager-emulated", disk)
    assert (code, out) == (1, "")
    assert err == "qompr turs: -object pr-manager-emulated: Parameter 'id' is missing\n"


# -- beside the real sg_turs -------------------------------------------------------------------


def _normalized(text: str) -> str:
    """Without the program's name, the usage text, the measured times and the qompr version
    ``-V`` adds."""
    text = text.replace("sg_turs", "qompr turs").split("Usage: ")[0]
    text = text.replace(f" (qompr {qompr.__version__})", "")
    text = re.sub(r"was \d+\.\d{6} secs; \d+ operations/sec", "was T secs; N operations/sec", text)
    return re.sub(r"(?m)^( +duration=)\d+ ms$", r"\1N ms", text)


def _sg_turs(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    assert SG_TURS is not None
    proc = subprocess.run(
        ["sg_turs", *argv],
        executable=SG_TURS,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    return proc.returncode, _normalized(proc.stdout), _normalized(proc.stderr)


def _ours(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "qompr", "turs", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    return proc.returncode, _normalized(proc.stdout), _normalized(proc.stderr)


needs_sg_turs = pytest.mark.skipif(SG_TURS is None, reason="sg_turs is not installed")

_COMMAND_LINES = [
    [],
    ["-v"],
    ["-vv"],
    ["-vvv"],
    ["-n", "3"],
    ["-n", "3", "-v"],
    ["-n", "0"],
    ["-t"],
    ["-n", "2", "-t"],
    ["-d", "1", "-n", "2"],
    ["-l"],
    ["-l", "-n", "3"],
    ["-l", "-v"],
    ["-p"],
    ["-p", "-n", "2", "-d", "1"],
    ["--num=2"],
    ["--nu=2"],
    ["-O", "-n=2"],
    ["-O", "--old", "-t"],
    ["-O", "-vvt"],
]
_ERRORS = [
    ["-x"],
    ["-x", "-n", "bad"],
    ["-n", "bad"],
    ["-d", "x"],
    ["--n=2"],
    ["--ver"],
    ["extra"],
    ["-V"],
    ["-vV"],
    ["-h"],
    ["-O", "-x"],
    ["-O", "-n=0"],
    ["-O", "-d=x"],
    ["-O", "-l"],
    ["-O", "-N", "-n", "2"],
    ["-O", "a"],
    ["-O", "-?"],
]


@pytest.mark.interop
@needs_sg_turs
@pytest.mark.parametrize("argv", _COMMAND_LINES + _ERRORS)
def test_same_as_sg_turs_on_files(disk: str, argv: list[str]) -> None:
    env = dict(os.environ, QOMPR_LOAD_PLUGINS="")
    for device in (disk, "/dev/null", disk + ".missing"):
        assert _ours([*argv, device], env) == _sg_turs([*argv, device], env), device


@pytest.mark.interop
@needs_sg_turs
def test_old_syntax_from_the_environment(disk: str) -> None:
    env = dict(os.environ, QOMPR_LOAD_PLUGINS="", SG3_UTILS_OLD_OPTS="1")
    for argv in (["-n=2", disk], ["-N", "-n", "2", disk], ["-vV"], ["-x", disk]):
        assert _ours(argv, env) == _sg_turs(argv, env), argv


@pytest.mark.interop
@needs_sg_turs
def test_no_device(disk: str) -> None:
    env = dict(os.environ, QOMPR_LOAD_PLUGINS="")
    assert _ours([], env) == _sg_turs([], env)


# -- the same device answers (SG_IO stand-in) --------------------------------------------------


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    if SG_TURS is None or CC is None:
        pytest.skip("needs sg_turs and a C compiler")
    lib = tmp_path_factory.mktemp("shim") / "shim.so"
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(lib), str(SGIO_SHIM_C), "-ldl"], check=True)
    return str(lib)


_UA = SenseCode.REGISTRATIONS_PREEMPTED.to_bytes()
_NOT_READY = SenseCode.NOT_READY.to_bytes()
_BECOMING = _fixed(2, 4, 1, info=5000)
_BECOMING_DESC = _descriptor(2, 4, 1, bytes((0x00, 0x0A, 0x80, 0)) + (7000).to_bytes(8, "big"))
_PROGRESS = _fixed(2, 4, 4, sks=0x8000)
_PROGRESS_DESC = _descriptor(0, 0, 0x16, bytes((0x0A, 0x06, 0, 0x16, 0, 0, 0x40, 0x00)))
# Longer than sg_turs's 32-byte sense buffer: the kernel writes 32 bytes.
_LONG_SENSE = bytes((0x70, 0, 6, 0, 0, 0, 0, 30)) + bytes(4) + bytes((0x29,)) + bytes(25)
_ANSWERS: list[tuple[list[str], dict[str, bytes | int]]] = [
    ([], {}),
    (["-vvv"], {}),
    (["-n", "3"], {}),
    ([], {"status": 2, "sense": _UA}),
    (["-vv"], {"status": 2, "sense": _UA}),
    (["-n", "2"], {"status": 2, "sense": _UA}),
    (["-n", "2", "-v"], {"status": 2, "sense": _UA}),
    (["-d", "1", "-n", "2"], {"status": 2, "sense": _UA}),
    ([], {"status": 2, "sense": _NOT_READY}),
    (["-v"], {"status": 2, "sense": _NOT_READY}),
    (["-n", "2"], {"status": 2, "sense": _NOT_READY}),
    ([], {"status": 2, "sense": _BECOMING}),
    ([], {"status": 2, "sense": _BECOMING_DESC}),
    ([], {"status": 2, "sense": SenseCode.INVALID_OPCODE.to_bytes()}),
    (["-v"], {"status": 2, "sense": SenseCode.INVALID_FIELD.to_bytes(fixed=False)}),
    ([], {"status": 2, "sense": SenseCode.TARGET_FAILURE.to_bytes()}),
    (["-vv"], {"status": 2, "sense": _LONG_SENSE}),
    ([], {"status": 0x18}),
    ([], {"status": 8}),
    (["-v"], {"status": 0x28}),
    ([], {"errno": 6}),
    (["-vvv"], {"errno": 6}),
    ([], {"errno": 5}),
    (["-l"], {"status": 2, "sense": _UA}),
    (["-l", "-v"], {"status": 2, "sense": _UA}),
    (["-l"], {"status": 2, "sense": _NOT_READY}),
    (["-l", "-n", "2"], {"status": 2, "sense": _NOT_READY}),
    (["-l"], {"status": 2, "sense": SenseCode.INVALID_OPCODE.to_bytes()}),
    (["-l", "-n", "2"], {"status": 2, "sense": SenseCode.INVALID_OPCODE.to_bytes()}),
    (["-l"], {"status": 0x18}),
    (["-l"], {"errno": 6}),
    (["-p"], {}),
    (["-p"], {"status": 2, "sense": _PROGRESS}),
    (["-p", "-n", "2", "-d", "1"], {"status": 2, "sense": _PROGRESS}),
    (["-p"], {"status": 2, "sense": _PROGRESS_DESC}),
    (["-p"], {"status": 2, "sense": _UA}),
    (["-p", "-n", "2", "-d", "1"], {"status": 2, "sense": _UA}),
    (["-p"], {"errno": 6}),
]


def _answers(where: Path, answer: dict[str, bytes | int]) -> None:
    where.mkdir()
    for file, content in answer.items():
        raw = content if isinstance(content, bytes) else str(content).encode()
        (where / file).write_bytes(raw)


@pytest.mark.interop
@pytest.mark.parametrize(("argv", "answer"), _ANSWERS)
def test_same_as_sg_turs_on_the_same_answers(
    shim: str, tmp_path: Path, argv: list[str], answer: dict[str, bytes | int]
) -> None:
    device = tmp_path / "lun"
    device.write_bytes(b"")
    results = []
    for name, program in (("sg", _sg_turs), ("qompr", _ours)):
        _answers(tmp_path / name, answer)
        env = dict(os.environ, LD_PRELOAD=shim, SHIM_DIR=str(tmp_path / name))
        env["QOMPR_LOAD_PLUGINS"] = ""
        results.append(program([*argv, str(device)], env))
        log = (tmp_path / name / "log").read_text()
        assert set(log.splitlines()) == {"000000000000 0"}  # TEST UNIT READY, no data
    assert results[1] == results[0]
