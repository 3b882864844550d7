# SPDX-License-Identifier: MIT
"""sg_turs's command line, in its two syntaxes, and qompr's backend options.

The new syntax is read with glibc's ``getopt_long`` rules (:mod:`qompr._getopt`) and
sg_turs's option table; as in sg_turs, a bad option is reported and counted as a help
request, and parsing goes on.  ``-O`` / ``--old`` (or ``SG3_UTILS_OLD_OPTS`` in the
environment) switches to the old syntax (``-n=NUM``, ``-d=MS``, letters run together), read
again from the start with its quirks: ``-l`` and ``-N`` end the reading, ``-N`` going back to
the new syntax only when the old one was read first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from qompr._getopt import LongOption
from qompr._getopt import getopt_long
from qompr.cli.backend import BackendFields
from qompr.cli.backend import BackendOptions
from qompr.cli.backend import set_backend_option
from qompr.cli.sglib import device_operand
from qompr.cli.sglib import err
from qompr.cli.sglib import out
from qompr.cli.sglib.numbers import get_num
from qompr.cli.sglib.texts import Exit

__all__ = ["PROG", "SG_TURS_VERSION", "Done", "Opts", "parse", "usage"]

#: The name messages start with.
PROG = "qompr turs"
#: The sg_turs version whose behaviour is reproduced (sg3_utils 1.46).
SG_TURS_VERSION = "3.48 20210102"

_SHORT_OPTIONS = "d:hln:NOptvV"
# sg_turs's long options, in its order (the order decides which abbreviation wins).
_LONG_OPTIONS = (
    LongOption("delay", True, "-d"),
    LongOption("help", False, "-h"),
    LongOption("low", False, "-l"),
    LongOption("new", False, "-N"),
    LongOption("number", True, "-n"),
    LongOption("num", True, "-n"),
    LongOption("old", False, "-O"),
    LongOption("progress", False, "-p"),
    LongOption("time", False, "-t"),
    LongOption("verbose", False, "-v"),
    LongOption("version", False, "-V"),
)
# qompr's own, looked up only when a name matches none of sg_turs's.
_QOMPR_OPTIONS = (
    LongOption("helper", True),
    LongOption("object", True),
    LongOption("initiator", True),
    LongOption("target-port", True),
)

_USAGE = """\
Usage: qompr turs [--delay=MS] [--help] [--low] [--number=NUM] [--num=NUM]
                  [--progress] [--time] [--verbose] [--version]
                  [--object=SPEC [--initiator=NAME] [--target-port=N]] DEVICE
  sg_turs's options:
    --delay=MS|-d MS       wait MS milliseconds before each TEST UNIT READY
    --help|-h              print this text and exit
    --low|-l               sg_turs's low-level loop (reports a little differently)
    --number=NUM|-n NUM    send NUM TEST UNIT READY commands (default 1)
    --num=NUM|-n NUM       the same as --number
    --old|-O               read the options in sg_turs's old syntax (give it first)
    --progress|-p          print the progress a device reports; before each
                           command but the first, waits 30 s unless --delay
    --time|-t              print the time taken and the commands per second
    --verbose|-v           more detail on stderr (repeat for more)
    --version|-V           print the version and exit
  qompr's options:
    --object=SPEC          through the manager an --object string creates
                           (e.g. pr-manager-emulated,id=e,state=F)
    --helper=SOCKET        through the qompr-pr-helper listening on SOCKET
                           (qompr's protocol extension: not qemu-pr-helper)
    --initiator=NAME       I_T nexus: initiator (with --object, or --helper
                           of a qompr-pr-helper that lets this uid name it)
    --target-port=N        I_T nexus: relative target port (default 1)
  without --helper or --object the command goes to DEVICE with SG_IO.

Sends SCSI TEST UNIT READY (TUR) to DEVICE, as sg_turs does.  A logical unit
reports a pending unit attention to it, and so clears it.
"""

_USAGE_OLD = """\
Usage: qompr turs [-d=MS] [-l] [-n=NUM] [-p] [-t] [-v] [-V] DEVICE
  sg_turs's old syntax:
    -d=MS     wait MS milliseconds before each TEST UNIT READY
    -l        sg_turs's low-level loop
    -n=NUM    send NUM TEST UNIT READY commands (default 1)
    -p        print the progress a device reports
    -t        print the time taken and the commands per second
    -v        more detail on stderr (repeat for more)
    -N        the new syntax instead (also: --new)
    -V        print the version and exit

Sends SCSI TEST UNIT READY (TUR) to DEVICE, as sg_turs does.
"""


class Opts(BackendFields):
    """sg_turs's ``struct opts_t`` plus qompr's backend options (a plain mutable record, as
    :class:`~qompr.cli.backend.BackendFields`)."""

    delay_given: bool = False
    low: bool = False
    progress: bool = False
    time: bool = False
    opts_new: bool = True
    verbose_given: bool = False
    version_given: bool = False
    delay: int = 0
    help: int = 0
    number: int = 1
    verbose: int = 0
    device: str | None = None

    @property
    def backend(self) -> BackendOptions:
        """The options naming the manager."""
        return BackendOptions(
            self.helper,
            tuple(self.objects),
            self.initiator,
            self.target_port,
            test_unit_ready=True,
        )


class Done(Exception):  # noqa: N818  (control flow, never escapes run())
    """The command line alone decided the exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def usage(op: Opts) -> None:
    """sg_turs's ``usage_for``: the syntax in use, on stdout."""
    out(_USAGE if op.opts_new else _USAGE_OLD)


def _syntax_error(op: Opts, message: str) -> Done:
    err(message)
    usage(op)
    return Done(Exit.SYNTAX_ERROR)


def _parse_new(op: Opts, argv: Sequence[str]) -> None:
    """sg_turs's ``new_parse_cmd_line``."""
    operands: list[str] = []
    options = getopt_long(
        argv,
        _SHORT_OPTIONS,
        _LONG_OPTIONS,
        operands,
        extension=_QOMPR_OPTIONS,
        report=lambda message: err(f"{PROG}: {message}\n"),
    )
    for opt, value in options:
        if opt in ("-h", "?"):
            op.help += 1
        elif opt in ("-d", "-n"):
            number = get_num(value)
            if number < 0:
                name = "delay" if opt == "-d" else "number"
                raise _syntax_error(op, f"bad argument to '--{name}='\n")
            if opt == "-d":
                op.delay, op.delay_given = number, True
            else:
                op.number = number
        elif opt == "-l":
            op.low = True
        elif opt == "-O":
            op.opts_new = False
            return  # the old syntax reads the whole command line again
        elif opt == "-p":
            op.progress = True
        elif opt == "-t":
            op.time = True
        elif opt == "-v":
            op.verbose_given = True
            op.verbose += 1
        elif opt == "-V":
            op.version_given = True
        elif opt != "-N":  # -N is accepted and ignored
            _qompr_option(op, opt, value)
    op.device, extra = device_operand(op.device, operands)
    if extra:
        usage(op)
        raise Done(Exit.SYNTAX_ERROR)


def _qompr_option(op: Opts, opt: str, value: str) -> None:
    try:
        set_backend_option(op, opt, value)
    except ValueError as bad:
        raise _syntax_error(op, f"bad argument to '--{bad}'\n") from None


def _old_number(op: Opts, text: str, letter: str, *, zero: bool) -> int:
    number = get_num(text)
    if number < 0 or (number == 0 and not zero):
        # sg_turs prints this one on stdout.
        out(f"Couldn't decode number after '{letter}=' option\n")
        usage(op)
        raise Done(Exit.SYNTAX_ERROR)
    return number


def _parse_old(op: Opts, argv: Sequence[str]) -> None:
    """sg_turs's ``old_parse_cmd_line``, quirks included."""
    for arg in argv:
        if not arg:
            continue
        if not arg.startswith("-"):
            if op.device is None:
                op.device = arg
                continue
            err(f"too many arguments, got: {op.device}, not expecting: {arg}\n")
            usage(op)
            raise Done(Exit.SYNTAX_ERROR)
        rest = arg[1:]
        unknown = False
        while rest:
            letter = rest[0]
            if letter == "l":
                op.low = True
                return  # sg_turs stops reading here
            if letter == "N":
                op.opts_new = True
                return
            if letter == "?":
                op.help += 1
                return
            if letter == "p":
                op.progress = True
            elif letter == "t":
                op.time = True
            elif letter == "v":
                op.verbose_given = True
                op.verbose += 1
            elif letter == "V":
                op.version_given = True
            elif letter != "O":
                unknown = True
                break
            rest = rest[1:]
        if not rest:
            continue
        if rest.startswith("d="):
            op.delay = _old_number(op, rest[2:], "d", zero=True)
            op.delay_given = True
        elif rest.startswith("n="):
            op.number = _old_number(op, rest[2:], "n", zero=False)
        elif rest.startswith("-old"):
            pass
        elif unknown:
            err(f"Unrecognized option: {rest}\n")
            usage(op)
            raise Done(Exit.SYNTAX_ERROR)


def parse(argv: Sequence[str]) -> Opts:
    """sg_turs's ``parse_cmd_line``: the syntax ``SG3_UTILS_OLD_OPTS`` or ``-O`` picks.

    :raises Done: when the command line alone decides the exit status.
    """
    op = Opts()
    if "SG3_UTILS_OLD_OPTS" in os.environ:
        op.opts_new = False
        _parse_old(op, argv)
        if op.opts_new:
            _parse_new(op, argv)
    else:
        _parse_new(op, argv)
        if not op.opts_new:
            _parse_old(op, argv)
    return op
