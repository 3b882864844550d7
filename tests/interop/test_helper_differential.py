# SPDX-License-Identifier: MIT
"""Differential test: the same raw conversations with the real qemu-pr-helper 7.2 and with
qompr-pr-helper must get the same replies and the same fate (kept or closed).

Each :class:`~tests._support.wire.Script` is a list of ``sendmsg`` calls (bytes plus kinds of
fds), followed by a probe request whose answer shows whether the connection survived, and a
half-close.  Replies are compared byte for byte, with one documented exception: sense bytes
past the 18 that were built, where qemu-pr-helper sends uninitialised stack on its read-only-fd
path and qompr sends zeros (:meth:`~tests._support.wire.Outcome.normalised`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qompr.testing import HANDSHAKE
from qompr.testing import FdFactory
from qompr.testing import HelperProcess
from qompr.testing import loop_device as attach_loop_device
from qompr.testing import pr_in
from qompr.testing import pr_out
from tests._support.wire import Outcome
from tests._support.wire import Script
from tests._support.wire import Step
from tests._support.wire import run_script

pytestmark = pytest.mark.interop

QEMU_PR_HELPER = shutil.which("qemu-pr-helper") or "/usr/bin/qemu-pr-helper"
H = Step(HANDSHAKE)
FD_KINDS = [
    "null", "null-ro", "null-wo", "zero", "reg", "reg-ro", "dir", "pipe-r", "pipe-w",
    "sock", "eventfd", "memfd", "ptmx", "proc-ro", "loop", "loop-ro",
]  # fmt: skip


def _cdb(*head: int) -> bytes:
    return bytes(head).ljust(16, b"\0")


def _scripts() -> list[Script]:
    s: list[Script] = []

    def add(name: str, *steps: Step, probe: bool = True) -> None:
        needs = tuple(sorted({k for st in steps for k in st.fds if k.startswith("loop")}))
        s.append(Script(name, (H, *steps) if not name.startswith("hs/") else steps, probe, needs))

    # Every kind of fd, with PR IN and with PR OUT (read-only ones are refused before SG_IO).
    for kind in FD_KINDS:
        add(f"fd/{kind}/in", Step(pr_in(), (kind,)))
        add(f"fd/{kind}/out", Step(pr_out(24) + bytes(24), (kind,)))
    # Allocation lengths: the answer is cut to them; more than 8192 closes.
    for alloc in (0, 1, 8, 255, 256, 4096, 8191, 8192, 8193, 65535):
        add(f"alloc/{alloc}", Step(pr_in(alloc), ("null",)))
    # Parameter list lengths (CDB bytes 7-8 only), with the data they announce.
    for length in (0, 1, 23, 24, 25, 28, 100, 8192, 8193, 65535):
        data = bytes(length) if length <= 8192 else b""
        add(f"paramlen/{length}", Step(pr_out(length) + data, ("null",)))
    spc_length = _cdb(0x5F, 0, 0, 0, 0, 0xFF, 0xFF, 0, 24)  # SPC's bytes 5-8 say 0xFFFF0018
    add("paramlen/bytes-5-6-ignored", Step(spc_length + bytes(24), ("null",)))
    add("paramlen/only-bytes-5-6", Step(_cdb(0x5F, 0, 0, 0, 0, 0, 1, 0, 0), ("null",)))
    for length in (0, 24, 8192, 8193):
        data = bytes(length) if length <= 8192 else b""
        add(f"readonly-out/{length}", Step(pr_out(length) + data, ("null-ro",)))
    # Service actions travel untouched to SG_IO.
    add("sa/read-full-status", Step(pr_in(255, action=3), ("null",)))
    add("sa/in-reserved-1f", Step(pr_in(255, action=0x1F), ("null",)))
    add("sa/register-and-move", Step(pr_out(24, action=7) + bytes(24), ("null",)))
    add("sa/out-reserved-1f", Step(pr_out(24, action=0x1F) + bytes(24), ("null",)))
    # Other opcodes close the connection.
    for opcode in (0x00, 0x12, 0x5D, 0x60, 0xA3, 0xFF):
        add(f"opcode/{opcode:02x}", Step(_cdb(opcode, 0, 0, 0, 0, 0, 0, 0, 24), ("null",)))
    # Descriptors: none, two, many, in pieces.
    add("nofd/in", Step(pr_in()))
    add("nofd/out", Step(pr_out(24) + bytes(24)))
    add("fds/two-on-cdb", Step(pr_in(), ("null", "null")))
    add("fds/three-on-cdb", Step(pr_in(), ("null", "reg", "pipe-r")))
    add("fds/sixteen", Step(pr_in(), ("null",) * 16))
    add("fds/seventeen", Step(pr_in(), ("null",) * 17))
    add("fds/one-on-each-half", Step(pr_in()[:8], ("null",)), Step(pr_in()[8:], ("null",)))
    add("fds/on-second-half", Step(pr_in()[:8]), Step(pr_in()[8:], ("null",)))
    add("fds/extra-on-parameter-data", Step(pr_out(24), ("null",)), Step(bytes(24), ("reg",)))
    add("fds/extra-on-next-request", Step(pr_in(), ("null",)), Step(pr_in(), ("null", "reg")))
    # Split and merged sends.
    bytewise = (Step(pr_in()[:1], ("null",)), *(Step(pr_in()[i : i + 1]) for i in range(1, 16)))
    add("split/cdb-byte-by-byte", *bytewise)
    add("split/fd-on-last-byte", Step(pr_in()[:15]), Step(pr_in()[15:], ("null",)))
    pieces = (
        Step(pr_out(24)[:9], ("null",)),
        Step(pr_out(24)[9:]),
        Step(bytes(10)),
        Step(bytes(14)),
    )
    add("split/out-data-in-pieces", *pieces)
    add("split/cdb-and-data-together", Step(pr_out(24) + bytes(24), ("null",)))
    add("split/data-then-next-cdb", Step(pr_out(8), ("null",)), Step(bytes(8) + pr_in(), ("null",)))
    # Pipelining.
    add("pipe/two-sendmsgs", Step(pr_in(), ("null",)), Step(pr_in(16), ("reg",)))
    mixed = (Step(pr_in(), ("null",)), Step(pr_out(24) + bytes(24), ("null-ro",)))
    add("pipe/three-mixed", *mixed, Step(pr_in(8), ("null",)))
    add("pipe/two-cdbs-two-fds-one-sendmsg", Step(pr_in() + pr_in(), ("null", "null")))
    add("pipe/two-cdbs-one-fd", Step(pr_in() + pr_in(), ("null",)))
    add("pipe/out-and-in-one-fd", Step(pr_out(24) + bytes(24) + pr_in(), ("null",)))
    add("pipe/after-close-trigger", Step(_cdb(0x12), ("null",)), Step(pr_in(), ("null",)))
    # Handshakes (these scripts spell out their own).
    add("hs/none-then-eof", probe=False)
    add("hs/nonzero-1", Step(b"\0\0\0\1"), Step(pr_in(), ("null",)))
    add("hs/nonzero-high-bit", Step(b"\x80\0\0\0"), Step(pr_in(), ("null",)))
    add("hs/all-ones", Step(b"\xff\xff\xff\xff"), Step(pr_in(), ("null",)))
    add("hs/split-1-3", Step(b"\0"), Step(b"\0\0\0"), Step(pr_in(), ("null",)))
    add("hs/fd-on-handshake-then-cdb-without", Step(HANDSHAKE, ("null",)), Step(pr_in()))
    add("hs/handshake-and-cdb-one-fd", Step(HANDSHAKE + pr_in(), ("null",)))
    add("hs/handshake-and-cdb-two-sendmsg", Step(HANDSHAKE), Step(pr_in(), ("null",)))
    add("hs/short-then-eof", Step(b"\0\0"), probe=False)
    add("hs/eight-zero-bytes", Step(HANDSHAKE + bytes(4)), Step(pr_in()[:12], ("null",)))
    # Ends in the middle of things.
    add("eof/after-handshake", probe=False)
    add("eof/mid-cdb", Step(pr_in()[:7], ("null",)), probe=False)
    add("eof/mid-parameter-data", Step(pr_out(24) + bytes(10), ("null",)), probe=False)
    add("eof/after-request", Step(pr_in(), ("null",)), probe=False)
    # Junk.
    add("junk/zero-cdb", Step(bytes(16), ("null",)))
    add("junk/text", Step(b"GET / HTTP/1.0\r\n\r\n", ("null",)))
    all_in = bytes([0x5E] + [0xFF] * 6 + [0, 8] + [0xFF] * 7)
    all_out = bytes([0x5F] + [0xFF] * 6 + [0, 24] + [0xFF] * 7)
    add("junk/pr-in-all-bits-set", Step(all_in, ("null",)))
    add("junk/pr-out-tail-bytes", Step(all_out + bytes(24), ("null",)))
    return s


SCRIPTS = _scripts()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("differential")


@pytest.fixture(scope="module")
def loop_device(workdir: Path) -> Iterator[str | None]:
    with contextlib.ExitStack() as stack:
        try:
            dev = stack.enter_context(attach_loop_device(workdir))
        except OSError as exc:
            sys.stderr.write(f"\nNO LOOP DEVICE for the differential test: {exc}\n")
            yield None
            return
        yield dev


@pytest.fixture(scope="module")
def helpers(workdir: Path) -> Iterator[tuple[HelperProcess, HelperProcess]]:
    if not os.path.exists(QEMU_PR_HELPER):
        pytest.skip(f"REAL qemu-pr-helper NOT INSTALLED at {QEMU_PR_HELPER}: nothing compared")
    if os.geteuid() != 0:
        pytest.skip(
            "qemu-pr-helper MUST START AS ROOT (libcap-ng privilege drop): nothing compared"
        )
    (workdir / "real").mkdir()
    (workdir / "ours").mkdir()
    real = HelperProcess([QEMU_PR_HELPER], str(workdir / "real"))
    ours = HelperProcess([sys.executable, "-m", "qompr.daemon.main"], str(workdir / "ours"))
    with real, ours:
        yield real, ours
        # Neither helper may have died on the way.
        assert real.proc is not None and real.proc.poll() is None
        assert ours.proc is not None and ours.proc.poll() is None


def test_the_corpus_is_big_enough() -> None:
    assert len(SCRIPTS) >= 80
    assert len({s.name for s in SCRIPTS}) == len(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_same_replies_and_fate(
    script: Script,
    helpers: tuple[HelperProcess, HelperProcess],
    workdir: Path,
    loop_device: str | None,
) -> None:
    if script.needs and loop_device is None:
        pytest.skip(f"NO LOOP DEVICE (losetup failed): {script.name} not compared")
    real, ours = helpers
    theirs = run_script(real.path, script, FdFactory(workdir, loop_device))
    mine = run_script(ours.path, script, FdFactory(workdir, loop_device))
    _check(script, theirs, mine)


def _check(script: Script, theirs: Outcome, mine: Outcome) -> None:
    for reply in mine.replies:
        assert not any(reply.sense[18:]), "qompr must send zeros past the built sense"
    assert mine.normalised() == theirs.normalised(), script.name
    if script.probe:
        # The probe's reply is last if and only if the connection survived the script.
        assert _probe_answered(mine) == _probe_answered(theirs)


def _probe_answered(outcome: Outcome) -> bool:
    return bool(outcome.replies) and outcome.replies[-1].sense[:14] == _PROBE_SENSE


# The probe (PR OUT on a read-only fd) answers ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
_PROBE_SENSE = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0])
