# SPDX-License-Identifier: MIT
"""sg_persist's command line: its option table, usage texts and checks, and qompr's options.

The options are read with glibc's ``getopt_long`` rules (:mod:`qompr._getopt`) and
sg_persist's table, in its order (the order decides which abbreviation wins); qompr's own
options are looked up only when a name matches none of sg_persist's, so every abbreviation
sg_persist accepts means the same here (``--o`` is ``--out``, not ``--object``).
"""

from __future__ import annotations

from collections.abc import Sequence

from qompr._getopt import GetoptError
from qompr._getopt import LongOption
from qompr._getopt import getopt_long
from qompr.cli.backend import BackendFields
from qompr.cli.backend import BackendOptions
from qompr.cli.backend import backend_conflict
from qompr.cli.backend import set_backend_option
from qompr.cli.persist.transport_ids import Tids
from qompr.cli.persist.transport_ids import build_transportid
from qompr.cli.sglib import device_operand
from qompr.cli.sglib import err
from qompr.cli.sglib import says_version
from qompr.cli.sglib.numbers import get_num
from qompr.cli.sglib.numbers import scan_hex
from qompr.cli.sglib.texts import Exit

__all__ = [
    "MX_ALLOC_LEN",
    "PROG",
    "SG_PERSIST_LONG_OPTIONS",
    "SG_PERSIST_SHORT_OPTIONS",
    "SG_PERSIST_VERSION",
    "Done",
    "Opts",
    "parse",
    "usage",
]

#: The name messages start with (sg_persist's ``ME``).
PROG = "qompr persist"
#: The sg_persist version whose behaviour is reproduced.
SG_PERSIST_VERSION = "0.67 20190913"

MX_ALLOC_LEN = 8192

#: sg_persist's short options (its getopt string).
SG_PERSIST_SHORT_OPTIONS = "AcCd:GHhiIkK:l:Lm:MnoPQ:rRsS:T:UvVX:yYzZ"


def _long_table(table: Sequence[tuple[str, bool, str]]) -> tuple[LongOption, ...]:
    return tuple(LongOption(name, has_arg, val) for name, has_arg, val in table)


#: sg_persist's long options, in its order (the order decides which abbreviation wins).
SG_PERSIST_LONG_OPTIONS = _long_table(
    [
        ("alloc-length", True, "-l"),
        ("alloc_length", True, "-l"),
        ("clear", False, "-C"),
        ("device", True, "-d"),
        ("help", False, "-h"),
        ("hex", False, "-H"),
        ("in", False, "-i"),
        ("maxlen", True, "-m"),
        ("no-inquiry", False, "-n"),
        ("no_inquiry", False, "-n"),
        ("out", False, "-o"),
        ("param-alltgpt", False, "-Y"),
        ("param_alltgpt", False, "-Y"),
        ("param-aptpl", False, "-Z"),
        ("param_aptpl", False, "-Z"),
        ("param-rk", True, "-K"),
        ("param_rk", True, "-K"),
        ("param-sark", True, "-S"),
        ("param_sark", True, "-S"),
        ("param-unreg", False, "-U"),
        ("param_unreg", False, "-U"),
        ("preempt", False, "-P"),
        ("preempt-abort", False, "-A"),
        ("preempt_abort", False, "-A"),
        ("prout-type", True, "-T"),
        ("prout_type", True, "-T"),
        ("read-full-status", False, "-s"),
        ("read_full_status", False, "-s"),
        ("read-keys", False, "-k"),
        ("read_keys", False, "-k"),
        ("readonly", False, "-y"),
        ("read-reservation", False, "-r"),
        ("read_reservation", False, "-r"),
        ("read-status", False, "-s"),
        ("read_status", False, "-s"),
        ("register", False, "-G"),
        ("register-ignore", False, "-I"),
        ("register_ignore", False, "-I"),
        ("register-move", False, "-M"),
        ("register_move", False, "-M"),
        ("release", False, "-L"),
        ("relative-target-port", True, "-Q"),
        ("relative_target_port", True, "-Q"),
        ("replace-lost", False, "-z"),
        ("replace_lost", False, "-z"),
        ("report-capabilities", False, "-c"),
        ("report_capabilities", False, "-c"),
        ("reserve", False, "-R"),
        ("transport-id", True, "-X"),
        ("transport_id", True, "-X"),
        ("unreg", False, "-U"),
        ("verbose", False, "-v"),
        ("version", False, "-V"),
    ]
)
# qompr's own options.
_QOMPR_LONG_OPTIONS = _long_table(
    [
        ("helper", True, ""),
        ("object", True, ""),
        ("initiator", True, ""),
        ("target-port", True, ""),
        ("json", False, ""),
    ]
)


class Opts(BackendFields):
    """sg_persist's ``struct opts_t`` plus qompr's backend options (a plain mutable record, as
    :class:`~qompr.cli.backend.BackendFields`)."""

    prout_type: int = 0
    param_rk: int = 0
    param_sark: int = 0
    param_rtp: int = 0
    prin_sa: int = -1
    prout_sa: int = -1
    param_alltgpt: bool = False
    param_aptpl: bool = False
    param_unreg: bool = False
    pr_in: bool = True
    inquiry: bool = True
    hex: int = 0
    readonly: bool = False
    readwrite_force: bool = False
    verbose: int = 0
    version_given: bool = False
    alloc_len: int = MX_ALLOC_LEN
    device: str | None = None
    json: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.tids = Tids()

    @property
    def backend(self) -> BackendOptions:
        """The options naming the manager."""
        return BackendOptions(self.helper, tuple(self.objects), self.initiator, self.target_port)

    @property
    def uses_manager(self) -> bool:
        return self.backend.uses_manager


_PRIN_LETTERS = {"-k": 0, "-r": 1, "-c": 2, "-s": 3}
_PROUT_LETTERS = {"-G": 0, "-R": 1, "-L": 2, "-C": 3, "-P": 4, "-A": 5, "-I": 6, "-M": 7, "-z": 8}
# Numbers, as sg_persist's: qompr.scsi's enums (PrOutAction) would be built at every start for
# two comparisons, and a PR IN on a device uses nothing else of qompr.scsi.
_REGISTER_AND_MOVE = _PROUT_LETTERS["-M"]

_USAGE_MAIN = """\
Usage: qompr persist [OPTIONS] [DEVICE]
  where the main OPTIONS are:
    --clear|-C                 PR Out: Clear
    --help|-h                  print usage message, twice for more
    --in|-i                    request PR In command (default)
    --out|-o                   request PR Out command
    --param-rk=RK|-K RK        PR Out parameter reservation key
                               (RK is in hex)
    --param-sark=SARK|-S SARK    PR Out parameter service action
                                 reservation key (SARK is in hex)
    --preempt|-P               PR Out: Preempt
    --preempt-abort|-A         PR Out: Preempt and Abort
    --prout-type=TYPE|-T TYPE    PR Out type field (see '-hh')
    --read-full-status|-s      PR In: Read Full Status
    --read-keys|-k             PR In: Read Keys (default)
    --read-reservation|-r      PR In: Read Reservation
    --read-status|-s           PR In: Read Full Status
    --register|-G              PR Out: Register
    --register-ignore|-I       PR Out: Register and Ignore
    --register-move|-M         PR Out: Register and Move
                               for '--register-move'
    --release|-L               PR Out: Release
    --replace-lost|-z          PR Out: Replace Lost Reservation
    --report-capabilities|-c   PR In: Report Capabilities
    --reserve|-R               PR Out: Reserve
    --unreg|-U                 optional with PR Out Register and Move
  and the backend OPTIONS (qompr's own) are:
    --helper=SOCKET            through the qemu-pr-helper listening on SOCKET
    --object=SPEC              through the manager created from an --object
                               string (e.g. pr-manager-emulated,id=e,state=F)
    --initiator=NAME           I_T nexus: initiator (with --object, or --helper
                               of a qompr-pr-helper that lets this uid name it)
    --target-port=N            I_T nexus: relative target port (default 1)
    --json                     print the result as JSON
  without --helper or --object the command goes to DEVICE with SG_IO.

Performs a SCSI PERSISTENT RESERVE (IN or OUT) command, as sg_persist does.
Invoking 'qompr persist DEVICE' will do a PR In Read Keys command.
Use '-hh' for more options and TYPE meanings.
"""

_USAGE_OTHER = """\
Usage: qompr persist [OPTIONS] [DEVICE]
  where the other OPTIONS are:
    --alloc-length=LEN|-l LEN    allocation length hex value (used with
                                 PR In only) (default: 8192 (2000 in hex))
    --device=DEVICE|-d DEVICE    supply DEVICE as an option rather than
                                 an argument
    --hex|-H                   output response in hex (for PR In commands)
    --maxlen=LEN|-m LEN        allocation length in decimal, by default.
                               like --alloc-len= (def: 8192, 8k, 2000h)
    --no-inquiry|-n            skip INQUIRY (default: do INQUIRY)
    --param-alltgpt|-Y         PR Out parameter 'ALL_TG_PT'
    --param-aptpl|-Z           PR Out parameter 'APTPL'
    --readonly|-y              open DEVICE read-only (def: read-write)
    --relative-target-port=RTPI|-Q RTPI    relative target port identifier
    --transport-id=TIDS|-X TIDS    one or more TransportIDs can
                                   be given in several forms
    --verbose|-v               output additional debug information
    --version|-V               output version string

For the main options use '--help' or '-h' once.


PR Out TYPE field value meanings:
  0:    obsolete (was 'read shared' in SPC)
  1:    write exclusive
  2:    obsolete (was 'read exclusive')
  3:    exclusive access
  4:    obsolete (was 'shared access')
  5:    write exclusive, registrants only
  6:    exclusive access, registrants only
  7:    write exclusive, all registrants
  8:    exclusive access, all registrants
"""


def usage(level: int) -> None:
    err(_USAGE_MAIN if level < 2 else _USAGE_OTHER)


class Done(Exception):  # noqa: N818  (control flow, never escapes run())
    """The exit status is decided (by the command line, or a device that cannot be opened)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _bad(option: str) -> Done:
    err(f"bad argument to '--{option}'\n")
    return Done(Exit.SYNTAX_ERROR)


def parse(argv: Sequence[str]) -> tuple[Opts, int]:
    """sg_persist's option loop and checks.

    :returns: the options and the ``-h`` count.
    :raises Done: when the command line alone decides the exit status.
    """
    op = Opts()
    operands: list[str] = []
    help_level = 0
    num_prin_sa = num_prout_sa = 0
    want_prin = want_prout = False
    try:
        for opt, value in getopt_long(
            argv,
            SG_PERSIST_SHORT_OPTIONS,
            SG_PERSIST_LONG_OPTIONS,
            operands,
            extension=_QOMPR_LONG_OPTIONS,
        ):
            if opt in _PRIN_LETTERS:
                op.prin_sa = _PRIN_LETTERS[opt]
                num_prin_sa += 1
            elif opt in _PROUT_LETTERS:
                op.prout_sa = _PROUT_LETTERS[opt]
                num_prout_sa += 1
            elif opt == "-d":
                op.device = value
            elif opt == "-h":
                help_level += 1
            elif opt == "-H":
                op.hex += 1
            elif opt == "-i":
                want_prin = True
            elif opt == "-o":
                want_prout = True
            elif opt == "-n":
                op.inquiry = False
            elif opt == "-U":
                op.param_unreg = True
            elif opt == "-Y":
                op.param_alltgpt = True
            elif opt == "-Z":
                op.param_aptpl = True
            elif opt == "-v":
                op.verbose += 1
            elif opt == "-V":
                op.version_given = True
            elif opt == "-y":
                if not op.readwrite_force:
                    op.readwrite_force, op.readonly = op.readonly, not op.readonly
            else:
                _parse_value(op, opt, value)
    except GetoptError as exc:
        err(f"{PROG}: {exc}\n")
        usage(1)
        raise Done(Exit.OK) from None  # sg_persist's exit status after a getopt error
    op.device, extra = device_operand(op.device, operands)
    if extra:
        usage(1)
        raise Done(Exit.SYNTAX_ERROR)
    _check(op, help_level, (want_prin, want_prout), (num_prin_sa, num_prout_sa))
    return op, help_level


def _parse_value(op: Opts, opt: str, value: str) -> None:
    """The options with an argument."""
    if opt in ("-K", "-S"):
        key = scan_hex(value, 64)
        if key is None:
            raise _bad("param-rk" if opt == "-K" else "param-sark")
        if opt == "-K":
            op.param_rk = key
        else:
            op.param_sark = key
    elif opt in ("-l", "-m"):
        name = "maxlen" if opt == "-m" else "alloc-length"
        length = get_num(value) if opt == "-m" else scan_hex(value, 32)
        if length is None or length == -1:
            raise _bad(name)
        length &= 0xFFFF_FFFF
        if length > MX_ALLOC_LEN:
            err(f"'--{name}' argument exceeds maximum value ({MX_ALLOC_LEN})\n")
            raise Done(Exit.SYNTAX_ERROR)
        op.alloc_len = length
    elif opt == "-Q":
        rtp = scan_hex(value, 32)
        if rtp is None:
            raise _bad("relative-target-port")
        if rtp > 0xFFFF:
            err("argument to '--relative-target-port' 0 to ffff inclusive\n")
            raise Done(Exit.SYNTAX_ERROR)
        op.param_rtp = rtp
    elif opt == "-T":
        prout_type = scan_hex(value, 32)
        if prout_type is None:
            raise _bad("prout-type")
        op.prout_type = prout_type
    elif opt == "-X":
        if not build_transportid(value, op.tids):
            raise _bad("transport-id")
    else:
        _parse_qompr_value(op, opt, value)


def _parse_qompr_value(op: Opts, opt: str, value: str) -> None:
    """qompr's own options."""
    try:
        if not set_backend_option(op, opt, value) and opt == "--json":
            op.json = True
    except ValueError as bad:
        raise _bad(str(bad)) from None


def _check(op: Opts, help_level: int, want: tuple[bool, bool], counts: tuple[int, int]) -> None:
    """sg_persist's checks after the option loop (and qompr's)."""
    want_prin, want_prout = want
    num_prin_sa, num_prout_sa = counts
    if help_level > 0:
        usage(help_level)
        raise Done(Exit.OK)
    if says_version(bool(op.verbose), op.version_given, f"version: {SG_PERSIST_VERSION}"):
        raise Done(Exit.OK)
    if op.device is None:
        err("No device name given\n")
        usage(1)
        raise Done(Exit.SYNTAX_ERROR)
    if want_prout and want_prin:
        err("choose '--in' _or_ '--out' (not both)\n")
        usage(1)
        raise Done(Exit.CONTRADICT)
    if want_prout:
        op.pr_in = False
        if num_prout_sa != 1 or num_prin_sa != 0:
            err(
                ">> For Persistent Reserve Out one and only one appropriate\n"
                ">> service action must be chosen (e.g. '--register')\n"
            )
            raise Done(Exit.CONTRADICT)
    else:
        if num_prout_sa > 0:
            err(
                ">> When a service action for Persistent Reserve Out is chosen the\n"
                ">> '--out' option must be given (as a safeguard)\n"
            )
            raise Done(Exit.CONTRADICT)
        if num_prin_sa == 0:
            err(
                ">> No service action given; assume Persistent Reserve In command\n"
                ">> with Read Keys service action\n"
            )
            op.prin_sa = 0
        elif num_prin_sa > 1:
            err("Too many service actions given; choose one only\n")
            usage(1)
            raise Done(Exit.CONTRADICT)
    if (op.param_unreg or op.param_rtp) and op.prout_sa != _REGISTER_AND_MOVE:
        err("--unreg or --relative-target-port only useful with --register-move\n")
        usage(1)
        raise Done(Exit.CONTRADICT)
    if op.prout_sa == _REGISTER_AND_MOVE and op.tids.count != 1:
        err("with --register-move one (and only one) --transport-id should be given\n")
        usage(1)
        raise Done(Exit.CONTRADICT)
    if op.prout_sa in (1, 2, 4, 5) and op.prout_type == 0:
        err("warning>>> --prout-type probably needs to be given\n")
    conflict = backend_conflict(op.backend, "--object")
    if conflict is not None:
        err(conflict)
        raise Done(Exit.CONTRADICT)
