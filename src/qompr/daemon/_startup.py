# SPDX-License-Identifier: MIT
"""``qompr-pr-helper``'s start-up steps, in qemu-pr-helper 7.2's order and with its messages
(scsi/qemu-pr-helper.c ``main``; docs/reference):

1. the listening socket: systemd's fd 3 (``LISTEN_FDS=1``; ``-k`` is then refused) or
   ``-k PATH``, any old file there unlinked (:func:`listening_socket`);
2. ``-d``: detach as ``daemon(0, 0)`` (:func:`daemonize`); then, with ``-d`` or ``-f``, the
   locked pid file (:func:`write_pidfile`);
3. privileges dropped: every capability but CAP_SYS_RAWIO and what the executor needs,
   uid/gid from ``-u``/``-g``, supplementary groups and the bounding set cleared
   (:func:`drop_privileges`);
4. what start-up used and freed goes back to the system (:func:`release_start_up_memory`);
5. ``--processes``: more serving processes forked (:func:`fork_servers`).

Every failure raises :class:`~qompr.daemon._options.Exit` with qemu-pr-helper's text.  Stop
signals that arrive during all this are kept by :class:`StopSignals` and honoured once
serving begins.  No step keeps state in module globals.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import signal
import socket
from collections.abc import Iterable

from qompr.daemon._options import DEFAULT_SOCKET
from qompr.daemon._options import fail
from qompr.linux import caps
from qompr.linux import systemd
from qompr.transport.unix import UNIX_PATH_MAX
from qompr.transport.unix import raw_bind

__all__ = [
    "LISTEN_BACKLOG",
    "STOP_SIGNALS",
    "StopSignals",
    "daemonize",
    "drop_privileges",
    "fork_servers",
    "listening_socket",
    "raise_nofile_limit",
    "release_start_up_memory",
    "write_pidfile",
]

#: The listen backlog of a socket the daemon makes itself: the kernel's SOMAXCONN since Linux
#: 5.4 (it caps any value at net.core.somaxconn), as qompr supervise's socket and the
#: systemd socket unit ask.  qemu-pr-helper's is 1, so a burst of VMs starting at once stalls.
LISTEN_BACKLOG = 4096
#: qemu-pr-helper stops on these (``term_signal``).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopSignals:
    """Remembers stop signals from the first moment until the server takes over.

    A stop request that comes before the event loop runs must still stop it cleanly:
    :meth:`install` at once, then :meth:`pending` when serving starts.
    """

    def __init__(self) -> None:
        self._received: list[int] = []

    def install(self) -> None:
        """Catch :data:`STOP_SIGNALS` (and ignore SIGPIPE: a client gone mid-reply is an
        EPIPE, not a death)."""
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._remember)

    def _remember(self, signum: int, _frame: object) -> None:
        self._received.append(signum)

    @property
    def pending(self) -> bool:
        """Whether a stop signal came."""
        return bool(self._received)


def listening_socket(socket_path: str | None, argv0: str) -> tuple[socket.socket, str | None]:
    """systemd's socket, or one bound to ``-k`` (default ``/var/run/qemu-pr-helper.sock``).

    :returns: the socket, and the path the daemon must remove on exit (``None`` for a
        socket-activated one: qemu-pr-helper unlinks that too, a defect not copied).
    """
    try:
        activated = systemd.listen_fds()
    except systemd.ActivationError as exc:
        fail(str(exc.strerror))
    if activated == 0:
        path = socket_path or DEFAULT_SOCKET
        return listen(path), path
    if socket_path is not None:
        fail("Unix socket can't be set when using socket activation")
    if activated > 1:
        fail(f"{argv0} does not support socket activation with LISTEN_FDS > 1")
    return socket.socket(fileno=systemd.FIRST_SOCKET_ACTIVATION_FD), None


def listen(path: str) -> socket.socket:
    """qemu-sockets.c ``unix_listen_saddr`` with its messages."""
    encoded = os.fsencode(path)
    if len(encoded) > UNIX_PATH_MAX:
        fail(f"UNIX socket path '{path}' is too long\nPath must be less than 108 bytes")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        sock.close()
        fail(f"Failed to unlink socket {path}: {exc.strerror}")
    err = raw_bind(sock, encoded)  # the whole sockaddr_un, as QEMU: 108 bytes fit
    if err:
        sock.close()
        fail(f"Failed to bind socket to {path}: {os.strerror(err)}")
    try:
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:  # pragma: no cover
        sock.close()
        fail(f"Failed to listen on socket: {exc.strerror}")
    return sock


def daemonize() -> None:
    """``daemon(0, 0)``: fork, new session, cwd /, stdio on /dev/null."""
    try:
        pid = os.fork()
    except OSError as exc:
        fail(f"Failed to daemonize: {exc.strerror}")
    if pid:
        os._exit(0)
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def write_pidfile(path: str) -> int:
    """QEMU's ``qemu_write_pidfile``: create, lock (F_SETLK), check, truncate, write.

    :returns: the locked file's fd (keep it open: the lock lives as long as it does).
    """
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            fail(f"Could not create '{path}': {exc.strerror}")
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            fail(f"Cannot lock pid file: {os.strerror(exc.errno or errno.EAGAIN)}")
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


def raise_nofile_limit() -> None:
    """Each client is one fd: let the daemon hold as many as the hard limit allows."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def drop_privileges(keep: Iterable[caps.Capability], *, uid: int | None, gid: int | None) -> None:
    """Keep CAP_SYS_RAWIO and *keep*, switch to *uid*/*gid* (qemu-pr-helper's
    ``capng_change_id(..., CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING)``).

    After the drop the interpreter may not read its own library (a Python under /root and
    ``-u nobody``), so nothing the daemon runs afterwards imports a module it has not
    imported by now (test_privileges runs it so).
    """
    wanted = [caps.Capability.CAP_SYS_RAWIO, *keep]
    try:
        caps.drop_privileges(list(dict.fromkeys(wanted)), uid=uid, gid=gid)
    except OSError as exc:
        fail(f"Failed to drop privileges: {os.strerror(exc.errno or errno.EPERM)}")


def release_start_up_memory() -> None:
    """Give back to the system what start-up allocated and freed (imports read and unmarshal
    files, build classes): one collection, then glibc's ``malloc_trim``.  The objects left
    live as long as the daemon, so they are frozen out of later collections (``gc.freeze``,
    which also keeps pre-forked processes from touching their pages)."""
    import ctypes
    import gc

    gc.collect()
    gc.freeze()
    with contextlib.suppress(AttributeError, OSError):  # not glibc
        ctypes.CDLL(None).malloc_trim(0)


def fork_servers(count: int) -> list[int] | None:
    """Fork *count* more serving processes; the children's pids, or ``None`` in a child.

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
