# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``'s command line, parsed as qemu-pr-helper 7.2 parses its own.

Options are acted on as they are read (``-k`` must be absolute, ``-u``/``-g`` must resolve,
``-V``/``-h`` print and exit), with glibc ``getopt_long`` rules (:mod:`qompr._getopt`) and
qemu-pr-helper's messages.  qompr's additions are long options only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Sequence
from typing import NoReturn

from qompr._getopt import GetoptError
from qompr._getopt import getopt_long

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PIDFILE",
    "DEFAULT_SOCKET",
    "DEFAULT_STALL_TIMEOUT",
    "PROG",
    "USAGE",
    "Exit",
    "Options",
    "fail",
    "parse_args",
]

PROG = "qompr-pr-helper"
#: Default ``--max-connections``: QEMU opens one per ``pr-manager-helper`` object (one per
#: VM for libvirt's managed helper), so a per-host helper needs thousands.
DEFAULT_MAX_CONNECTIONS = 16384
#: Default ``--stall-timeout`` (seconds): QEMU sends a request in one ``sendmsg`` and reads
#: its reply at once, so a message that takes this long to arrive (or leave) is an attack or
#: a dead peer.
DEFAULT_STALL_TIMEOUT = 60.0
#: qemu-pr-helper's ``compute_default_paths``: ``<localstatedir>/run/qemu-pr-helper.*``.
DEFAULT_SOCKET = "/var/run/qemu-pr-helper.sock"
DEFAULT_PIDFILE = "/var/run/qemu-pr-helper.pid"
_SHORT = "hVk:f:dT:u:g:vq"
_LONG = {
    "help": False,
    "version": False,
    "socket": True,
    "pidfile": True,
    "daemon": False,
    "trace": True,
    "user": True,
    "group": True,
    "verbose": False,
    "quiet": False,
    # qompr additions
    "backend": True,
    "allow-uid": True,
    "allow-gid": True,
    "allow-naming-uid": True,
    "plugin": True,
    "keep-privileges": False,
    "log-format": True,
    "max-workers": True,
    "processes": True,
    "max-connections": True,
    "stall-timeout": True,
    "control": True,
    "migrate-pr": True,
}
_ALIASES = {
    "-h": "--help",
    "-V": "--version",
    "-k": "--socket",
    "-f": "--pidfile",
    "-d": "--daemon",
    "-T": "--trace",
    "-u": "--user",
    "-g": "--group",
    "-v": "--verbose",
    "-q": "--quiet",
}

USAGE = """\
Usage: {prog} [OPTIONS] FILE
Persistent Reservation helper program for QEMU (qompr implementation)

  -h, --help                display this help and exit
  -V, --version             output version information and exit

  -d, --daemon              run in the background
  -f, --pidfile=PATH        PID file when running as a daemon
                            (default '{pidfile}')
  -k, --socket=PATH         path to the unix socket
                            (default '{socket}')
  -T, --trace [[enable=]<pattern>][,events=<file>][,file=<file>]
                            specify tracing options (accepted and ignored)
  -u, --user=USER           user to drop privileges to
  -g, --group=GROUP         group to drop privileges to
  -v, --verbose             log more (repeat for debugging output)
  -q, --quiet               log only errors

qompr options:
      --backend=OBJECT      execute commands with this pr-manager object
                            (e.g. pr-manager-emulated,id=emu0,state=/var/lib/qompr/pr.db)
                            instead of SG_IO on the passed file descriptor
      --allow-uid=UID[,UID...]
      --allow-gid=GID[,GID...]
                            serve only clients with these SO_PEERCRED ids
      --allow-naming-uid=UID[,UID...]
                            besides root, let clients with these uids name their
                            initiator and target port (qompr's protocol extension,
                            e.g. 'qompr persist --helper --initiator' for fence_scsi);
                            other clients, QEMU included, are named by the backend
      --plugin=NAME         load this qompr plugin (entry point); never automatic
      --keep-privileges     do not drop capabilities or change ids
      --log-format=FORMAT   'text' (default) or 'json'
      --max-workers=N       most commands executing at once (default 64)
      --processes=N         serve from N processes sharing the socket (default 1;
                            SG_IO executor only)
      --max-connections=N   most client connections open at once (default {connections})
      --stall-timeout=SECONDS
                            close a connection that leaves a message unfinished or
                            its reply unread this long (default {stall:g})
      --control=PATH        answer QMP-shaped JSON commands (query-stats) on this
                            unix socket (mode 0600); tracks each VM's PR key and
                            type for live migration (query-pr-tracking)
      --migrate-pr=MODE     QEMU 11's migrate-pr destination PREEMPT: 'passthrough'
                            (default, as qemu-pr-helper) or 'handover' (done right
                            on every target, LIO included)
"""


class Options:
    """The parsed command line.

    A plain class: nothing compares, prints or copies it, and attrs would generate and keep
    (with their source, in linecache) an ``__init__``, ``__repr__`` and ``__eq__`` of twenty
    fields, some 60 kB of every helper's resident memory.

    :param socket_path: ``-k``; ``None`` means the default (or socket activation).
    :param pidfile: ``-f``; ``None`` means the default.
    :param daemonize: ``-d``.
    :param uid: ``-u`` as a number, if given.
    :param gid: ``-g`` as a number, if given.
    :param verbosity: ``-v`` count.
    :param quiet: ``-q``.
    :param backend: ``--backend`` object strings.
    :param allow_uids: ``--allow-uid`` values.
    :param allow_gids: ``--allow-gid`` values.
    :param allow_naming_uids: ``--allow-naming-uid`` values.
    :param plugins: ``--plugin`` names.
    :param keep_privileges: ``--keep-privileges``.
    :param log_format: ``--log-format``.
    :param max_workers: ``--max-workers``.
    :param processes: ``--processes``.
    :param max_connections: ``--max-connections``.
    :param stall_timeout: ``--stall-timeout``, in seconds.
    :param control: ``--control``, the control socket's path.
    :param migrate_pr: ``--migrate-pr``: ``passthrough`` or ``handover``.
    """

    def __init__(self) -> None:
        self.socket_path: str | None = None
        self.pidfile: str | None = None
        self.daemonize: bool = False
        self.uid: int | None = None
        self.gid: int | None = None
        self.verbosity: int = 0
        self.quiet: bool = False
        self.backend: list[str] = []
        self.allow_uids: list[int] = []
        self.allow_gids: list[int] = []
        self.allow_naming_uids: list[int] = []
        self.plugins: list[str] = []
        self.keep_privileges: bool = False
        self.log_format: str = "text"
        self.max_workers: int = 64
        self.processes: int = 1
        self.max_connections: int = DEFAULT_MAX_CONNECTIONS
        self.stall_timeout: float = DEFAULT_STALL_TIMEOUT
        self.control: str | None = None
        self.migrate_pr: str = "passthrough"


class Exit(Exception):  # noqa: N818  (control flow: main() prints it and exits)
    """Leave with *status*, printing *out* on stdout and *err* on stderr.

    :param status: the exit status.
    :param out: text for stdout (``--help``, ``--version``).
    :param err: text for stderr (every error, qemu-pr-helper's wording).
    """

    def __init__(self, status: int, out: str = "", err: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.out = out
        self.err = err


def fail(message: str) -> NoReturn:
    """Leave with status 1 and ``qompr-pr-helper: MESSAGE``."""
    raise Exit(1, err=f"{PROG}: {message}\n")


def _numeric_id(text: str) -> int | None:
    # qemu_strtoul plus QEMU's "(uid_t)res == res" check.
    if re.fullmatch(r"[0-9]+", text) is None:
        return None
    value = int(text)
    return value if value <= 0xFFFFFFFF else None


def _user_id(name: str) -> int:
    # grp and pwd only for -u/-g: a helper started without them (libvirt's) pays for neither.
    # Read while parsing, before the privilege drop.
    import pwd

    return pwd.getpwnam(name).pw_uid


def _group_id(name: str) -> int:
    import grp

    return grp.getgrnam(name).gr_gid


def _named_id(text: str, lookup: Callable[[str], int], what: str) -> int:
    # QEMU's -u/-g: the name in the passwd/group database, else a number.
    try:
        return lookup(text)
    except KeyError:
        value = _numeric_id(text)
        if value is None:
            fail(f"invalid {what} '{text}'")
        return value


def _ids(text: str, what: str) -> list[int]:
    out = []
    for part in text.split(","):
        value = _numeric_id(part.strip())
        if value is None:
            fail(f"invalid {what} '{part}'")
        out.append(value)
    return out


def _count(text: str, what: str, *, most: int | None = None) -> int:
    value = _numeric_id(text)
    if not value or (most is not None and value > most):
        fail(f"invalid number of {what} '{text}'")
    return value


def _seconds(text: str) -> float:
    if re.fullmatch(r"[0-9]+(\.[0-9]*)?", text) is None or not 0 < float(text) <= 86400:
        fail(f"invalid timeout '{text}' (seconds, more than 0 and at most 86400)")
    return float(text)


def parse_args(argv: Sequence[str]) -> Options:
    """Parse a command line (``argv[0]`` included) as qemu-pr-helper does.

    :raises Exit: for ``-h``, ``-V`` and every error, with the text to print.
    """
    prog = argv[0] if argv else PROG
    opts = Options()
    try:
        for spelt, value in getopt_long(argv[1:], _SHORT, _LONG):
            name = _ALIASES.get(spelt, spelt)
            if name == "--socket":
                if not value.startswith("/"):
                    fail("socket path must be absolute")
                opts.socket_path = value
            elif name == "--pidfile":
                opts.pidfile = value
            elif name == "--daemon":
                opts.daemonize = True
            elif name == "--trace":
                pass  # QEMU's trace backends do not exist here
            elif name == "--user":
                opts.uid = _named_id(value, _user_id, "user")
            elif name == "--group":
                opts.gid = _named_id(value, _group_id, "group")
            elif name == "--verbose":
                opts.verbosity += 1
            elif name == "--quiet":
                opts.quiet = True
            elif name == "--version":
                raise Exit(0, out=_version())
            elif name == "--help":
                raise Exit(0, out=_usage())
            elif name == "--backend":
                opts.backend.append(value)
            elif name == "--allow-uid":
                opts.allow_uids += _ids(value, "uid")
            elif name == "--allow-gid":
                opts.allow_gids += _ids(value, "gid")
            elif name == "--allow-naming-uid":
                opts.allow_naming_uids += _ids(value, "uid")
            elif name == "--plugin":
                opts.plugins += [p.strip() for p in value.split(",") if p.strip()]
            elif name == "--keep-privileges":
                opts.keep_privileges = True
            elif name == "--log-format":
                if value not in ("text", "json"):
                    fail(f"invalid log format '{value}' (expected 'text' or 'json')")
                opts.log_format = value
            elif name == "--max-workers":
                opts.max_workers = _count(value, "workers")
            elif name == "--processes":
                opts.processes = _count(value, "processes", most=64)
            elif name == "--max-connections":
                opts.max_connections = _count(value, "connections")
            elif name == "--stall-timeout":
                opts.stall_timeout = _seconds(value)
            elif name == "--control":
                if not value.startswith("/"):
                    fail("control socket path must be absolute")
                opts.control = value
            elif name == "--migrate-pr":
                if value not in ("passthrough", "handover"):
                    fail(f"invalid --migrate-pr mode '{value}' (passthrough or handover)")
                opts.migrate_pr = value
    except GetoptError as exc:
        raise Exit(
            1, err=f"{prog}: {exc}\n{PROG}: Try `{prog} --help' for more information.\n"
        ) from None
    return opts


def _usage() -> str:
    return USAGE.format(
        prog=PROG,
        pidfile=DEFAULT_PIDFILE,
        socket=DEFAULT_SOCKET,
        connections=DEFAULT_MAX_CONNECTIONS,
        stall=DEFAULT_STALL_TIMEOUT,
    )


def _version() -> str:
    from qompr import __version__

    return (
        f"{PROG} {__version__} (qompr)\n"
        "Speaks the qemu-pr-helper protocol of QEMU 7.2.\n"
        "This is free software under the MIT license; there is NO warranty.\n"
    )
