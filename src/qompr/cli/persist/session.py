# SPDX-License-Identifier: MIT
"""One ``qompr persist`` run: sg_persist's ``main`` after the option checks.

The backend (a manager from ``--object`` / ``--helper``, or ``SG_IO`` on the device) runs the
command; the device is opened as sg3_utils opens it; the answer is judged, printed and, with
``--json``, reported.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Any

from qompr.cli.backend import Backend
from qompr.cli.backend import BackendFailed
from qompr.cli.backend import DeviceBackend
from qompr.cli.backend import PluginSource
from qompr.cli.backend import add_argv_parser
from qompr.cli.backend import open_backend
from qompr.cli.persist.options import PROG
from qompr.cli.persist.options import Done
from qompr.cli.persist.options import Opts
from qompr.cli.persist.options import parse
from qompr.cli.persist.prin import PRIN_SA_TEXT
from qompr.cli.persist.prin import Malformed
from qompr.cli.persist.prin import format_prin
from qompr.cli.persist.prin import transport_id_text
from qompr.cli.persist.transport_ids import MX_TID_LEN
from qompr.cli.sglib import err
from qompr.cli.sglib import out
from qompr.cli.sglib.hexdump import cstr
from qompr.cli.sglib.hexdump import hex_dump
from qompr.cli.sglib.passthrough import Response
from qompr.cli.sglib.passthrough import cdb_text
from qompr.cli.sglib.passthrough import process_resp
from qompr.cli.sglib.texts import PDT_TEXT
from qompr.cli.sglib.texts import Exit
from qompr.cli.sglib.texts import category_text
from qompr.cli.sglib.texts import convert_errno
from qompr.cli.sglib.texts import exit_text
from qompr.errors import ScsiError

__all__ = ["Session", "add_parser", "prin_cdb", "run"]

_REOPEN_READ_ONLY = frozenset((errno.EACCES, errno.EPERM, errno.EROFS))
_RDONLY_ENV = "SG_PERSIST_IN_RDONLY"


def prin_cdb(service_action: int, allocation_length: int) -> bytes:
    """The PERSISTENT RESERVE IN CDB (SPC-4 §6.15.1) sg_persist sends: opcode 5Eh, the
    SERVICE ACTION in byte 1, the ALLOCATION LENGTH in bytes 7-8, CONTROL 0.

    Written out, as the INQUIRY and TEST UNIT READY CDBs are, rather than encoded by
    :class:`qompr.scsi.PrInCdb`: the codec's attrs classes (attrs itself, about 40 ms on
    this machine) would be most of the start-up of a PR IN on a device, which needs nothing
    else of them.  tests/cli/test_persist.py checks these bytes against the codec's.

    :param service_action: 0-3, from the command line.
    :param allocation_length: at most 8192 (``MX_ALLOC_LEN``).
    """
    return bytes((0x5E, service_action, 0, 0, 0, 0, 0, *allocation_length.to_bytes(2, "big"), 0))


class Session:
    """One ``qompr persist`` run after the command line was accepted (sg_persist's main from
    the INQUIRY on)."""

    def __init__(self, op: Opts, plugins: PluginSource) -> None:
        self.op = op
        self.plugins = plugins
        self.flagged = False
        self.backend: Backend | DeviceBackend | None = None
        # What --json prints; its decoded parts are built only then (their codecs' import).
        self.report: dict[str, Any] = {"device": op.device, "backend": "direct"}

    def say(self, text: str) -> None:
        """Text for stdout (in JSON mode, stdout carries only the JSON)."""
        if not self.op.json:
            out(text)

    def command(self, fd: int, cdb: bytes, data_out: bytes = b"", allocation: int = 0) -> Response:
        assert self.backend is not None
        return self.backend.command(fd, cdb, data_out, allocation, verbose=self.op.verbose)

    def _report_manager(self, backend: Backend | DeviceBackend) -> None:
        if not isinstance(backend, Backend):
            return
        self.report["backend"] = backend.manager.typename
        self.report["manager"] = backend.manager.id
        shown = backend.shown_nexus
        if shown is not None:
            self.report["nexus"] = {
                "initiator": shown.initiator,
                "target_port": shown.target_port,
                "transport_id": shown.transport_id.identifier,
            }

    # -- the device -------------------------------------------------------------------------

    def open(self, readonly: bool, *, inquiry: bool = False) -> int:
        """Open the device as sg3_utils does (a manager's PR IN falls back to read-only).

        :param inquiry: the open for the INQUIRY, whose failure sg_persist words differently.
        :returns: the file descriptor.
        :raises Done: with the exit status (50 + errno) when the device cannot be opened.
        """
        op = self.op
        path = op.device
        assert path is not None
        fallback = op.uses_manager and op.pr_in and not readonly
        flags = os.O_NONBLOCK | (os.O_RDONLY if readonly else os.O_RDWR)
        while True:
            if op.verbose > 1:
                err(f"open {path} with flags=0x{flags:x}\n")
            try:
                return os.open(path, flags)
            except OSError as exc:
                code = exc.errno or errno.EIO
                if op.verbose > 1:
                    err(f"scsi_pt_open_flags: open({path}, 0x{flags:x}) failed: {exc.strerror}\n")
                if fallback and code in _REOPEN_READ_ONLY:
                    fallback, readonly = False, True
                    flags = os.O_NONBLOCK | os.O_RDONLY
                    continue
                if inquiry:
                    err(f"{PROG}: error opening file (ro): {path}: {os.strerror(code)}\n")
                else:
                    mode = "o" if readonly else "w"
                    err(f"{PROG}: error opening file {path} (r{mode}): {os.strerror(code)}\n")
                self.flagged = True
                raise Done(convert_errno(code)) from None

    def inquiry(self) -> int:
        """sg_persist's standard INQUIRY (direct backend only)."""
        op = self.op
        fd = self.open(True, inquiry=True)
        try:
            cdb = bytes((0x12, 0, 0, 0, 36, 0))
            if op.verbose:
                err(f"    inquiry cdb: {cdb_text(cdb)}\n")
            resp = self.command(fd, cdb, b"", 36)
            outcome = process_resp(resp, "inquiry", op.verbose, 36)
            ret = outcome.ret
            if ret == 0 and outcome.act is not None and outcome.act < 4:
                if op.verbose:
                    err(f"sg_ll_inquiry_com: got too few bytes ({outcome.act})\n")
                ret = Exit.MALFORMED
            if ret:
                self.say(f"{PROG}: SCSI INQUIRY failed on {op.device}\n")
                self.flagged = True
                return ret
            data = resp.data.ljust(36, b"\0")
            pdt = data[0] & 0x1F
            self.report["inquiry"] = {
                "vendor": cstr(data[8:16], 8),
                "product": cstr(data[16:32], 16),
                "revision": cstr(data[32:36], 4),
                "peripheral_device_type": PDT_TEXT[pdt],
            }
            self.say(
                f"  {cstr(data[8:16], 8)}  {cstr(data[16:32], 16)}  {cstr(data[32:36], 4)}\n"
                f"  Peripheral device type: {PDT_TEXT[pdt]}\n"
            )
            return Exit.OK
        finally:
            os.close(fd)

    # -- the commands -----------------------------------------------------------------------

    def prin(self, fd: int) -> int:
        """sg_persist's ``prin_work``."""
        op = self.op
        sa = op.prin_sa
        name = PRIN_SA_TEXT[sa]
        cdb = prin_cdb(sa, op.alloc_len)
        self.report.update(command="PR IN", service_action=name, cdb=cdb.hex())
        if op.verbose:
            err(f"    Persistent reservation in cdb: {cdb_text(cdb)}\n")
        resp = self.command(fd, cdb, b"", op.alloc_len)
        if op.json:
            from qompr.cli.persist.report import response_json

            self.report.update(response_json(resp))
        outcome = process_resp(resp, "Persistent reservation in", op.verbose, op.alloc_len)
        ret = outcome.ret
        if ret == 0 and outcome.act and op.verbose > 2:
            if op.verbose == 3:
                more = ", first 256 bytes" if outcome.act > 256 else ""
                dump = hex_dump(resp.data[:256], -1)
            else:
                more, dump = "", hex_dump(resp.data, 0)
            err(f"    Persistent reservation in: response{more}:\n{dump}")
        if ret:
            _say_failure("in", name, ret, op.verbose)
            return ret
        if op.json:
            from qompr.cli.persist.report import prin_json

            self.report["data"] = resp.data.hex()
            try:
                self.report["response"] = prin_json(sa, resp.data)
            except ScsiError as exc:
                self.report["response"] = None
                self.report["response_error"] = str(exc)
        buf = resp.data[: op.alloc_len].ljust(max(op.alloc_len, 24), b"\0")
        try:
            text = format_prin(sa, buf, op.alloc_len, op.hex, op.verbose)
        except Malformed as exc:
            err("Unexpected response for PRIN Report Capabilities\n")
            self.say(exc.text)
            return Exit.MALFORMED
        self.say(text)
        return Exit.OK

    def prout(self, fd: int) -> int:
        """sg_persist's ``prout_work`` and ``prout_reg_move_work``."""
        # The parameter-list codecs load on this path only (start-up of a PR IN).
        from qompr.cli.persist.prout import PROUT_SA_TEXT
        from qompr.cli.persist.prout import basic_parameters
        from qompr.cli.persist.prout import register_and_move_parameters
        from qompr.scsi import PrOutAction
        from qompr.scsi import PrOutCdb
        from qompr.scsi import PrScope

        op = self.op
        sa = op.prout_sa
        move = sa == PrOutAction.REGISTER_AND_MOVE
        tids = op.tids.compact()
        build = register_and_move_parameters if move else basic_parameters
        params = build(op, tids)
        cdb = PrOutCdb(sa, PrScope.LU_SCOPE, op.prout_type & 0x0F, len(params)).to_bytes()
        self.report.update(
            command="PR OUT",
            service_action=PROUT_SA_TEXT[sa],
            cdb=cdb.hex(),
            parameter_list=params.hex(),
        )
        if op.json:
            from qompr.cli.persist.report import prout_json

            try:
                self.report["parameters"] = prout_json(sa, params)
            except ScsiError as exc:
                self.report["parameters"] = None
                self.report["parameters_error"] = str(exc)
        if op.verbose:
            err(f"    Persistent reservation out cdb: {cdb_text(cdb)}\n")
            if op.verbose > 1:
                err("    Persistent reservation out parameters:\n" + hex_dump(params, 0))
        resp = self.command(fd, cdb, params)
        if op.json:
            from qompr.cli.persist.report import response_json

            self.report.update(response_json(resp))
        ret = process_resp(resp, "Persistent reservation out", op.verbose, 0).ret
        name = "register and move" if move else PROUT_SA_TEXT[sa]
        if ret:
            _say_failure("out", name, ret, op.verbose)
        elif op.verbose:
            what = "'register and move' command" if move else f"command ({name})"
            err(f"PR out: {what} successful\n")
        return ret

    # -- sg_persist's main, from the TransportID dump on -------------------------------------

    def run(self) -> int:
        op = self.op
        if op.verbose > 2 and op.tids.count:
            err(
                "number of tranport-ids decoded from command line (or stdin): "
                f"{op.tids.count}\n  Decode given transport-ids:\n"
            )
            for k in range(op.tids.count):
                self.say(transport_id_text("      ", op.tids.slot(k), MX_TID_LEN))
        ret = self._run()
        if ret and op.verbose == 0 and not self.flagged:
            text = exit_text(ret)
            err(f"{PROG} failed: {text}\n" if text else f"Some error occurred [{ret}]\n")
        self.report["exit_status"] = ret
        self.report["error"] = exit_text(ret, longer=True) if ret else None
        if op.json:
            import json

            out(json.dumps(self.report, indent=2, ensure_ascii=False) + "\n")
        return ret

    def _run(self) -> int:
        op = self.op
        try:
            backend = open_backend(op.backend, prog=PROG, plugins=self.plugins)
        except BackendFailed as failed:
            self.flagged = True
            return failed.status
        if not isinstance(backend, (Backend, DeviceBackend)):  # --object help, answered
            out(backend.text)
            return Exit.OK
        self.backend = backend
        self._report_manager(backend)
        try:
            if op.inquiry and not op.uses_manager:
                ret = self.inquiry()
                if ret:
                    return ret
            readonly = op.readonly
            if op.readwrite_force:
                readonly = False
            elif os.environ.get(_RDONLY_ENV) is not None and op.pr_in:
                readonly = True
            fd = self.open(readonly)
            try:
                ret = self.prin(fd) if op.pr_in else self.prout(fd)
            finally:
                os.close(fd)
            return ret
        except Done as done:
            return done.status
        finally:
            backend.close()


def run(argv: Sequence[str], *, plugin_manager: PluginSource = None) -> int:
    """Run ``qompr persist`` with the arguments *argv* (after the subcommand).

    :param plugin_manager: where the manager types ``--object`` may name come from beyond
        qompr's built-in ones: a plugin manager, or a function making one when a spec needs
        it (qompr's default plugin manager if omitted).
    :returns: the exit status, as sg_persist's.
    """
    try:
        op, _ = parse(argv)
    except Done as done:
        return done.status
    return Session(op, plugin_manager).run()


def add_parser(sub: Any) -> None:
    """Add ``persist`` to the ``qompr`` subcommands (its arguments are sg_persist's, read by
    :func:`run` as GNU getopt_long does)."""
    add_argv_parser(
        sub, "persist", "sg_persist's PERSISTENT RESERVE IN/OUT command, through any manager", run
    )


def _say_failure(direction: str, name: str, ret: int, verbose: int) -> None:
    """sg_persist's text for a PR IN or OUT (*direction* ``in`` or ``out``) that failed."""
    if ret == Exit.INVALID_OP:
        err(f"PR {direction} ({name}): command not supported\n")
    elif ret == Exit.ILLEGAL_REQ:
        err(
            f"PR {direction} ({name}): bad field in cdb or parameter list "
            "(perhaps unsupported service action)\n"
        )
    else:
        err(f"PR {direction} ({name}): {category_text(ret, verbose)}\n")
