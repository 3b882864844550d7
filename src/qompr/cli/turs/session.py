# SPDX-License-Identifier: MIT
"""One ``qompr turs`` run: sg_turs's ``main`` after its command line was read.

The TEST UNIT READY commands go through the run's manager (:mod:`qompr.cli.backend`): the
device itself with SG_IO, or :meth:`~qompr.managers.PRManager.test_unit_ready` of an
``--object`` manager, on the I_T nexus ``--initiator`` names, or of ``--helper``'s
``pr-manager-helper`` through qompr's protocol extension (``qompr-pr-helper`` only).
What is printed, and where, and the exit status follow sg_turs 3.48 (sg3_utils 1.46).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Sequence
from typing import Any

from qompr.cli.backend import Backend
from qompr.cli.backend import BackendFailed
from qompr.cli.backend import DeviceBackend
from qompr.cli.backend import PluginSource
from qompr.cli.backend import add_argv_parser
from qompr.cli.backend import backend_conflict
from qompr.cli.backend import open_backend
from qompr.cli.sglib import err
from qompr.cli.sglib import out
from qompr.cli.sglib import says_version
from qompr.cli.sglib.passthrough import Response
from qompr.cli.sglib.passthrough import ResponseVerdict
from qompr.cli.sglib.passthrough import cdb_text
from qompr.cli.sglib.passthrough import process_resp
from qompr.cli.sglib.sense import information
from qompr.cli.sglib.sense import progress
from qompr.cli.sglib.texts import Exit
from qompr.cli.sglib.texts import category_text
from qompr.cli.sglib.texts import convert_errno
from qompr.cli.turs.options import PROG
from qompr.cli.turs.options import SG_TURS_VERSION
from qompr.cli.turs.options import Done
from qompr.cli.turs.options import Opts
from qompr.cli.turs.options import parse
from qompr.cli.turs.options import usage
from qompr.errors import ScsiError

__all__ = ["add_parser", "run"]

_TUR_CDB = bytes(6)
# sg_turs reads at most this much sense (its sense buffer).
_SENSE_SIZE = 32
# --progress without --delay waits this long before each command but the first.
_PROGRESS_DELAY_MS = 30_000


class _Loop:
    """sg_turs's ``struct loop_res_t``: what the loop leaves for the summary (a plain record:
    an attrs class would be compiled at every start)."""

    reported: bool = False
    errors: int = 0
    ret: int = 0


class _Turs:
    """The commands of one run on an open device."""

    def __init__(self, op: Opts, backend: Backend | DeviceBackend, fd: int) -> None:
        self.op = op
        self.backend = backend
        self.fd = fd
        self.last = Response()

    def tur(
        self, *, noisy: bool, leadin: str = "test unit ready", show_cdb: bool = True
    ) -> ResponseVerdict:
        """One TEST UNIT READY, judged as ``sg_cmds_process_resp`` does."""
        if show_cdb and self.op.verbose:
            err(f"    {leadin} cdb: {cdb_text(_TUR_CDB)}\n")
        resp = self.backend.test_unit_ready(self.fd, verbose=self.op.verbose)
        if len(resp.sense) > _SENSE_SIZE:
            resp = resp._replace(sense=resp.sense[:_SENSE_SIZE])
        self.last = resp
        return process_resp(resp, leadin, self.op.verbose, 0, noisy=noisy)

    def becoming_ready(self) -> bool:
        """sg_turs's ``check_for_lu_becoming``: print the estimate a logical unit that is
        becoming ready (04h/01h) gives in INFORMATION, if it gives one."""
        from qompr.scsi import SenseData  # the codec, for a device that is not ready only

        sense = self.last.sense
        try:
            code = SenseData.from_bytes(sense).code if sense else None
        except ScsiError:
            code = None
        info = information(sense)
        if code is None or (code.asc, code.ascq) != (0x04, 0x01) or info is None:
            return False
        if not 0 < info < 0x1000000:
            return False
        out(f"device not ready, estimated to be ready in {info} milliseconds\n")
        return True

    def wait(self) -> None:
        if self.op.delay > 0:
            time.sleep(self.op.delay / 1000)

    def loop(self, result: _Loop) -> int:
        """sg_turs's ``loop_turs``: the commands sent."""
        op = self.op
        for k in range(op.number):
            self.wait()
            outcome = self.tur(noisy=k == 0)
            if not outcome.ret:
                continue
            result.errors += 1
            result.ret = outcome.ret
            if op.number == 1 or op.delay > 0:
                if outcome.ret == Exit.NOT_READY:
                    if not self.becoming_ready():
                        out("device not ready\n")
                    continue
                out(category_text(outcome.ret, op.verbose) + "\n")
                result.reported = True
                return k
        return op.number

    def low_loop(self, result: _Loop) -> int:
        """sg_turs's ``-l`` loop: its own reporting (and leadin) around the same commands."""
        op = self.op
        for k in range(op.number):
            self.wait()
            outcome = self.tur(noisy=k == 0, leadin="Test unit ready", show_cdb=False)
            if outcome.failed:
                result.ret = outcome.ret
                return k
            if outcome.ret == Exit.OK:
                continue
            result.errors += 1
            if outcome.ret == Exit.NOT_READY:
                if op.number == 1 or op.delay > 0:
                    if not self.becoming_ready():
                        out("device not ready\n")
                    result.ret = outcome.ret
                    result.reported = True
            elif outcome.ret == Exit.UNIT_ATTENTION:
                if op.verbose:
                    err("Ignoring Unit attention (sense key)\n")
                    result.reported = True
            elif op.number == 1:
                result.ret = outcome.ret
                out(category_text(outcome.ret, op.verbose) + "\n")
                result.reported = True
                return k
        return op.number

    def with_progress(self) -> int:
        """The ``--progress`` loop; its exit status."""
        op = self.op
        ret = 0
        k = 0
        while k < op.number:
            if op.delay > 0 and (op.delay_given or k > 0):
                self.wait()
            outcome = self.tur(noisy=op.number == 1)
            done = None if outcome.failed else progress(self.last.sense)
            if done is None:
                ret = outcome.ret
                break
            percent, rest = divmod(done * 100, 65536)
            out(f"Progress indication: {percent}.{rest // 656:02d}% done\n")
            k += 1
        if op.number > 1:
            out(f"Completed {k + 1 if k < op.number else k} Test Unit Ready commands\n")
        return ret

    def timed(self) -> int:
        """The loop without ``--progress``: summary, time, and the exit status."""
        op = self.op
        result = _Loop()
        start = time.monotonic_ns()
        done = self.low_loop(result) if op.low else self.loop(result)
        if op.time:
            elapsed_us = (time.monotonic_ns() - start) // 1000
            if elapsed_us > 0:
                secs, micros = divmod(elapsed_us, 1_000_000)
                rate = done * 1_000_000 // elapsed_us
                out(f"time to perform commands was {secs}.{micros:06d} secs")
                out(f"; {rate} operations/sec\n")
            else:
                out("Recorded 0 or less elapsed microseconds ??\n")
        if (op.number > 1 or result.errors > 0) and not result.reported:
            out(f"Completed {op.number} Test Unit Ready commands with {result.errors} errors\n")
        return result.ret if op.number == 1 else 0


def _open(op: Opts) -> int:
    """The device, opened read-only as sg_turs opens it.

    :raises Done: with 50 + errno when it cannot be opened.
    """
    assert op.device is not None
    flags = os.O_RDONLY | os.O_NONBLOCK
    if op.verbose > 1:
        err(f"open {op.device} with flags=0x{flags:x}\n")
    try:
        return os.open(op.device, flags)
    except OSError as exc:
        code = exc.errno or errno.EIO
        if op.verbose > 1:
            err(f"scsi_pt_open_flags: open({op.device}, 0x{flags:x}) failed: {exc.strerror}\n")
        err(f"main: error opening file: {op.device}: {os.strerror(code)}\n")
        raise Done(convert_errno(code)) from None


def _check(op: Opts) -> None:
    """What sg_turs checks before opening the device, and qompr's own options."""
    if op.help:
        usage(op)
        raise Done(Exit.OK)
    if says_version(op.verbose_given, op.version_given, f"Version string: {SG_TURS_VERSION}"):
        raise Done(Exit.OK)
    conflict = backend_conflict(op.backend, "--object or --helper")
    if conflict is not None:
        err(conflict)
        raise Done(Exit.CONTRADICT)
    if op.device is None:
        err("No DEVICE argument given\n")
        usage(op)
        raise Done(Exit.SYNTAX_ERROR)


def run(argv: Sequence[str], *, plugin_manager: PluginSource = None) -> int:
    """Run ``qompr turs`` with the arguments *argv* (after the subcommand).

    :param plugin_manager: where the manager types ``--object`` may name come from beyond
        qompr's built-in ones (as for :func:`qompr.cli.persist.run`).
    :returns: the exit status, as sg_turs's.
    """
    try:
        op = parse(argv)
        _check(op)
    except Done as done:
        return done.status
    if op.progress and not op.delay_given:
        op.delay = _PROGRESS_DELAY_MS
    try:
        backend = open_backend(op.backend, prog=PROG, plugins=plugin_manager)
    except BackendFailed as failed:
        return failed.status
    if not isinstance(backend, (Backend, DeviceBackend)):  # --object help, answered
        out(backend.text)
        return Exit.OK
    try:
        fd = _open(op)
    except Done as done:
        backend.close()
        return done.status
    try:
        turs = _Turs(op, backend, fd)
        return turs.with_progress() if op.progress else turs.timed()
    finally:
        os.close(fd)
        backend.close()


def add_parser(sub: Any) -> None:
    """Add ``turs`` to the ``qompr`` subcommands (its arguments are sg_turs's, read by
    :func:`run`, as for ``qompr persist``)."""
    add_argv_parser(sub, "turs", "sg_turs's TEST UNIT READY, through any manager", run)
