# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``: a drop-in replacement for QEMU's ``qemu-pr-helper``.

The command line, the start-up order and the messages are qemu-pr-helper 7.2's
(scsi/qemu-pr-helper.c ``main``; qemu-pr-facts.md §1.11):

1. options, each acted on as it is read (``-k`` must be absolute, ``-u``/``-g`` must
   resolve, ``-V``/``-h`` print and exit);
1a. multipath support, as a qemu-pr-helper built with it: /dev/mapper/control opened and
   libmpathpersist initialised (where either is missing, every fd gets SG_IO, as from
   Debian's build without multipath);
2. the listening socket: systemd's fd 3 (``LISTEN_FDS=1``; ``-k`` is then refused) or
   ``-k PATH`` (default ``/var/run/qemu-pr-helper.sock``), any old file there unlinked;
3. ``-d``: detach (``daemon(0, 0)``); then, with ``-d`` or ``-f``, the locked pid file;
4. privileges dropped: every capability but CAP_SYS_RAWIO (and CAP_SYS_ADMIN while
   multipath support is on), uid/gid from ``-u``/``-g``, supplementary groups and the
   bounding set cleared;
5. serve until SIGTERM, SIGINT or SIGHUP; requests executing then still get answered; the
   socket file is removed on the way out.

qompr's additions are long options only: ``--backend``, ``--allow-uid``, ``--allow-gid``,
``--plugin``, ``--keep-privileges``, ``--log-format``, ``--max-workers`` and ``--processes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import grp
import json
import logging
import os
import pwd
import re
import resource
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any
from typing import NoReturn

import attrs

import qompr
from qompr._getopt import GetoptError
from qompr._getopt import getopt_long
from qompr.daemon._backends import Backend
from qompr.daemon._backends import DefaultBackend
from qompr.daemon._backends import ManagerBackend
from qompr.daemon._server import HelperServer
from qompr.errors import QomprError
from qompr.linux import caps
from qompr.linux import systemd
from qompr.transport.unix import UNIX_PATH_MAX
from qompr.transport.unix import raw_bind

__all__ = ["DEFAULT_PIDFILE", "DEFAULT_SOCKET", "Options", "main", "parse_args"]

PROG = "qompr-pr-helper"
#: qemu-pr-helper's ``compute_default_paths``: ``<localstatedir>/run/qemu-pr-helper.*``.
DEFAULT_SOCKET = "/var/run/qemu-pr-helper.sock"
DEFAULT_PIDFILE = "/var/run/qemu-pr-helper.pid"
#: qemu-pr-helper listens with a backlog of 1; bursts of connecting VMs then stall.
BACKLOG = socket.SOMAXCONN

log = logging.getLogger("qompr.daemon")

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
    "plugin": True,
    "keep-privileges": False,
    "log-format": True,
    "max-workers": True,
    "processes": True,
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
      --plugin=NAME         load this qompr plugin (entry point); never automatic
      --keep-privileges     do not drop capabilities or change ids
      --log-format=FORMAT   'text' (default) or 'json'
      --max-workers=N       most commands executing at once (default 64)
      --processes=N         serve from N processes sharing the socket (default 1;
                            SG_IO executor only)
"""


@attrs.define
class Options:
    """The parsed command line.

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
    :param plugins: ``--plugin`` names.
    :param keep_privileges: ``--keep-privileges``.
    :param log_format: ``--log-format``.
    :param max_workers: ``--max-workers``.
    :param processes: ``--processes``.
    """

    socket_path: str | None = None
    pidfile: str | None = None
    daemonize: bool = False
    uid: int | None = None
    gid: int | None = None
    verbosity: int = 0
    quiet: bool = False
    backend: list[str] = attrs.Factory(list)
    allow_uids: list[int] = attrs.Factory(list)
    allow_gids: list[int] = attrs.Factory(list)
    plugins: list[str] = attrs.Factory(list)
    keep_privileges: bool = False
    log_format: str = "text"
    max_workers: int = 64
    processes: int = 1


class _Exit(Exception):  # noqa: N818  (control flow, never escapes main)
    def __init__(self, status: int, out: str = "", err: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.out = out
        self.err = err


def _fail(message: str) -> NoReturn:
    raise _Exit(1, err=f"{PROG}: {message}\n")


def _numeric_id(text: str) -> int | None:
    # qemu_strtoul plus QEMU's "(uid_t)res == res" check.
    if re.fullmatch(r"[0-9]+", text) is None:
        return None
    value = int(text)
    return value if value <= 0xFFFFFFFF else None


def _ids(text: str, what: str) -> list[int]:
    out = []
    for part in text.split(","):
        value = _numeric_id(part.strip())
        if value is None:
            _fail(f"invalid {what} '{part}'")
        out.append(value)
    return out


def parse_args(argv: Sequence[str]) -> Options:
    """Parse a command line (``argv[0]`` included) as qemu-pr-helper does.

    :raises _Exit: for ``-h``, ``-V`` and every error, with the text to print.
    """
    prog = argv[0] if argv else PROG
    opts = Options()
    try:
        for spelt, value in getopt_long(argv[1:], _SHORT, _LONG):
            name = _ALIASES.get(spelt, spelt)
            if name == "--socket":
                if not value.startswith("/"):
                    _fail("socket path must be absolute")
                opts.socket_path = value
            elif name == "--pidfile":
                opts.pidfile = value
            elif name == "--daemon":
                opts.daemonize = True
            elif name == "--trace":
                pass  # QEMU's trace backends do not exist here
            elif name == "--user":
                try:
                    opts.uid = pwd.getpwnam(value).pw_uid
                except KeyError:
                    opts.uid = _numeric_id(value)
                    if opts.uid is None:
                        _fail(f"invalid user '{value}'")
            elif name == "--group":
                try:
                    opts.gid = grp.getgrnam(value).gr_gid
                except KeyError:
                    opts.gid = _numeric_id(value)
                    if opts.gid is None:
                        _fail(f"invalid group '{value}'")
            elif name == "--verbose":
                opts.verbosity += 1
            elif name == "--quiet":
                opts.quiet = True
            elif name == "--version":
                raise _Exit(0, out=_version())
            elif name == "--help":
                raise _Exit(0, out=_usage())
            elif name == "--backend":
                opts.backend.append(value)
            elif name == "--allow-uid":
                opts.allow_uids += _ids(value, "uid")
            elif name == "--allow-gid":
                opts.allow_gids += _ids(value, "gid")
            elif name == "--plugin":
                opts.plugins += [p.strip() for p in value.split(",") if p.strip()]
            elif name == "--keep-privileges":
                opts.keep_privileges = True
            elif name == "--log-format":
                if value not in ("text", "json"):
                    _fail(f"invalid log format '{value}' (expected 'text' or 'json')")
                opts.log_format = value
            elif name == "--max-workers":
                workers = _numeric_id(value)
                if not workers:
                    _fail(f"invalid number of workers '{value}'")
                opts.max_workers = workers
            elif name == "--processes":
                count = _numeric_id(value)
                if not count or count > 64:
                    _fail(f"invalid number of processes '{value}'")
                opts.processes = count
    except GetoptError as exc:
        raise _Exit(
            1, err=f"{prog}: {exc}\n{PROG}: Try `{prog} --help' for more information.\n"
        ) from None
    return opts


def _usage() -> str:
    return USAGE.format(prog=PROG, pidfile=DEFAULT_PIDFILE, socket=DEFAULT_SOCKET)


def _version() -> str:
    return (
        f"{PROG} {qompr.__version__} (qompr)\n"
        "Speaks the qemu-pr-helper protocol of QEMU 7.2.\n"
        "This is free software under the MIT license; there is NO warranty.\n"
    )


# -- logging ------------------------------------------------------------------------------------
class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(opts: Options) -> None:
    level = logging.WARNING
    if opts.quiet:
        level = logging.ERROR
    elif opts.verbosity == 1:
        level = logging.INFO
    elif opts.verbosity >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if opts.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger("qompr")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# -- start-up steps -----------------------------------------------------------------------------
def _default_backend(opts: Options) -> tuple[Backend, bool]:
    """qemu-pr-helper's executor: multipath where device-mapper and libmpathpersist are."""
    # qemu-pr-helper's levels: loglevel starts at 1 and -v adds one; libmpathpersist gets
    # verbose = min(loglevel, 3) (0 with -q) and prints its CDBs from -vv on.
    level = 1 + opts.verbosity
    backend = DefaultBackend.probe(
        verbose=0 if opts.quiet else min(level, 3), noisy=not opts.quiet and level >= 3
    )
    return backend, backend.needs_sys_admin


def _make_backend(opts: Options) -> tuple[Backend, bool]:
    """The executor, and whether it needs CAP_SYS_ADMIN (multipath)."""
    if not opts.backend and not opts.plugins:
        return _default_backend(opts)
    from qompr.managers import PRManager
    from qompr.options import HelpText
    from qompr.options import ObjectCommandLine
    from qompr.options import Syntax
    from qompr.options import format_error
    from qompr.plugins import get_plugin_manager
    from qompr.plugins import new_tree

    try:
        # A root daemon never imports whatever happens to be installed (style rule 9).
        pm = get_plugin_manager(
            load_entrypoints=bool(opts.plugins), allow=opts.plugins or None, trace=False
        )
        tree = new_tree(pm)
        cmdline = ObjectCommandLine(tree, Syntax.KEYVAL, option="--backend")
        for arg in opts.backend:
            answer = cmdline.parse(arg)
            if isinstance(answer, HelpText):
                raise _Exit(0, out=answer.text)
    except QomprError as exc:
        raise _Exit(1, err=format_error(exc, PROG)) from None
    if not opts.backend:
        return _default_backend(opts)  # plugins loaded (and checked) for their hooks only
    managers = [obj for obj in cmdline.created if isinstance(obj, PRManager)]
    if not managers:
        _fail(f"--backend needs a persistent reservation manager, not '{opts.backend[-1]}'")
    manager = managers[-1]
    return ManagerBackend(manager), caps.Capability.CAP_SYS_ADMIN in manager.required_capabilities()


def _listen(path: str) -> socket.socket:
    """qemu-sockets.c ``unix_listen_saddr`` with its messages."""
    encoded = os.fsencode(path)
    if len(encoded) > UNIX_PATH_MAX:
        _fail(f"UNIX socket path '{path}' is too long\nPath must be less than 108 bytes")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        sock.close()
        _fail(f"Failed to unlink socket {path}: {exc.strerror}")
    err = raw_bind(sock, encoded)  # the whole sockaddr_un, as QEMU: 108 bytes fit
    if err:
        sock.close()
        _fail(f"Failed to bind socket to {path}: {os.strerror(err)}")
    try:
        sock.listen(BACKLOG)
    except OSError as exc:  # pragma: no cover
        sock.close()
        _fail(f"Failed to listen on socket: {exc.strerror}")
    return sock


def _daemonize() -> None:
    """``daemon(0, 0)``: fork, new session, cwd /, stdio on /dev/null."""
    try:
        pid = os.fork()
    except OSError as exc:
        _fail(f"Failed to daemonize: {exc.strerror}")
    if pid:
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _write_pidfile(path: str) -> int:
    """QEMU's ``qemu_write_pidfile``: create, lock (F_SETLK), check, truncate, write."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            _fail(f"Could not create '{path}': {exc.strerror}")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            _fail(f"Cannot lock pid file: {os.strerror(exc.errno or errno.EAGAIN)}")
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # someone replaced it meanwhile: try again
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _raise_nofile_limit() -> None:
    # Each client is one fd: let the daemon hold as many as the hard limit allows.
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_early_signals: list[int] = []


def _remember_signal(signum: int, _frame: object) -> None:
    _early_signals.append(signum)


def run(opts: Options, argv0: str = PROG) -> int:
    """Start the daemon with parsed options; returns the exit status."""
    # A stop request that comes before the loop runs must still stop it cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _remember_signal)
    _setup_logging(opts)
    backend, needs_admin = _make_backend(opts)
    if opts.processes > 1 and opts.backend:
        # Each process would have its own copy of the backend object and its state.
        _fail("--processes needs the SG_IO executor (no --backend)")
    try:
        activated = systemd.listen_fds()
    except systemd.ActivationError as exc:
        _fail(str(exc.strerror))
    socket_path: str | None = None
    if activated == 0:
        socket_path = opts.socket_path or DEFAULT_SOCKET
        listener = _listen(socket_path)
    else:
        if opts.socket_path is not None:
            _fail("Unix socket can't be set when using socket activation")
        if activated > 1:
            _fail(f"{argv0} does not support socket activation with LISTEN_FDS > 1")
        listener = socket.socket(fileno=systemd.FIRST_SOCKET_ACTIVATION_FD)
    if opts.daemonize:
        _daemonize()
    pidfile_fd = None
    if opts.daemonize or opts.pidfile is not None:
        pidfile_fd = _write_pidfile(DEFAULT_PIDFILE if opts.pidfile is None else opts.pidfile)
    _raise_nofile_limit()
    if not opts.keep_privileges:
        # After the drop the interpreter may not read its own library (a Python under /root
        # and -u nobody): everything the daemon will need must be imported by now.
        _preload()
        keep = [caps.Capability.CAP_SYS_RAWIO]
        if needs_admin:
            keep.append(caps.Capability.CAP_SYS_ADMIN)
        try:
            caps.drop_privileges(keep, uid=opts.uid, gid=opts.gid)
        except OSError as exc:
            _fail(f"Failed to drop privileges: {os.strerror(exc.errno or errno.EPERM)}")
    children = _fork_servers(opts.processes - 1)
    if children is None:  # a child: serve, then leave without the parent's clean-up
        child = HelperServer(
            listener,
            backend=backend,
            allow_uids=opts.allow_uids,
            allow_gids=opts.allow_gids,
            max_workers=opts.max_workers,
        )
        try:
            asyncio.run(_serve(child))
        finally:
            os._exit(0)

    def on_event(what: str) -> None:
        if what == "stopping":
            for pid in children:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        _notify(server, what, socket_path)

    server = HelperServer(
        listener,
        backend=backend,
        allow_uids=opts.allow_uids,
        allow_gids=opts.allow_gids,
        max_workers=opts.max_workers,
        on_event=on_event,
    )
    try:
        asyncio.run(_serve(server))
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    finally:
        stats = server.statistics()
        log.info(
            "served %d requests on %d connections (%d protocol errors)",
            stats.requests,
            stats.connections_accepted,
            stats.protocol_errors,
        )
        if socket_path is not None:
            try:
                os.unlink(socket_path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # As QEMU's socket_listen_cleanup reports it (e.g. after dropping to nobody).
                sys.stderr.write(f"{PROG}: Failed to unlink socket {socket_path}: {exc.strerror}\n")
        if pidfile_fd is not None:
            os.close(pidfile_fd)  # QEMU leaves the file in place too
    return 0


def _fork_servers(count: int) -> list[int] | None:
    """Fork *count* more serving processes; the children's pids, or None in a child.

    Done after the privilege drop (children inherit it) and before any thread or event loop
    exists.  A child dies with its parent (PR_SET_PDEATHSIG).
    """
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            caps.set_parent_death_signal(signal.SIGTERM)
            return None
        children.append(pid)
    return children


def _preload() -> None:
    import asyncio.unix_events  # noqa: F401
    import concurrent.futures.thread  # noqa: F401
    import encodings.idna  # noqa: F401
    import traceback  # noqa: F401


def _notify(server: HelperServer, what: str, path: str | None) -> None:
    where = path or "the socket-activated socket"
    if what == "ready":
        log.info("listening on %s", where)
        systemd.notify(f"READY=1\nSTATUS=Serving on {where}\nMAINPID={os.getpid()}")
    else:
        stats = server.statistics()
        systemd.notify(f"STOPPING=1\nSTATUS=Stopping ({stats.in_flight} commands in flight)")


async def _serve(server: HelperServer) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, server.stop)
    loop.add_signal_handler(signal.SIGUSR1, _log_statistics, server)
    if _early_signals:
        server.stop()
    await server.serve()


def _log_statistics(server: HelperServer) -> None:
    log.warning("statistics: %s", server.statistics())
    for conn in server.connections():
        log.warning("connection: %s", conn)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = list(sys.argv if argv is None else argv)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        opts = parse_args(args)
        return run(opts, args[0] if args else PROG)
    except _Exit as done:
        if done.out:
            sys.stdout.write(done.out)
            sys.stdout.flush()
        if done.err:
            sys.stderr.write(done.err)
            sys.stderr.flush()
        return done.status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
