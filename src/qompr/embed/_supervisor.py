# SPDX-License-Identifier: MIT
"""Managed helpers: one ``qompr-pr-helper`` per VM (or per host), restarted without a window.

libvirt's managed helper (``<reservations managed='yes'/>``) starts ``qemu-pr-helper -k
SOCKET``, waits for the socket file to appear, and on PR_MANAGER_STATUS_CHANGED restarts it.
Between the death and the restart the socket is gone or refuses connections, and a second
restart can race the first on the pidfile (qemu-devel, June 2019).

Here the supervisor itself creates the listening socket and keeps it for its whole life; each
helper incarnation receives it by socket activation (fd 3, ``LISTEN_FDS=1``, ``LISTEN_PID``).
A client that connects while no helper runs waits in the socket's backlog and is served by the
next incarnation: it never meets ECONNREFUSED or ENOENT.  Readiness comes from the helper's
``sd_notify("READY=1")`` on a datagram socket the supervisor owns.

A helper that can never start (``-u qemu`` on a host without that user, a state file it may
not write) is not restarted for ever: after ``max_start_failures`` incarnations in a row that
exit before READY=1, the supervisor gives up, keeps the last lines the helper wrote on stderr
(which it passes on as it reads them), calls ``on_give_up`` with a :class:`HelperStartError`,
and :meth:`HelperSupervisor.wait_ready` raises it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence

import attrs

from qompr.errors import QomprError
from qompr.errors import StateError

__all__ = ["HelperExit", "HelperStartError", "HelperSupervisor", "default_helper_command"]

log = logging.getLogger("qompr.embed.supervisor")

#: Listen backlog: connections queue here while a helper restarts (qemu-pr-helper uses 1).
#: The same as qompr-pr-helper's own socket and the systemd socket unit's (SOMAXCONN).
BACKLOG = 4096
#: Incarnations in a row that may exit before READY=1 before the supervisor gives up.
MAX_START_FAILURES = 5
#: How many of the helper's last stderr lines a give-up reports.
STDERR_LINES = 20
#: A helper that lives less than this is crashing: back off before the next start.
CRASH_WINDOW = 1.0
MAX_BACKOFF = 5.0

# posix_spawn puts the listening socket on fd 3; this shim then execs the helper with the
# socket-activation variables naming the helper's own pid ($$ survives exec).
_SHIM = 'export LISTEN_PID=$$ LISTEN_FDS=1 && exec "$@"'


class _Child:
    """A spawned helper (``os.posix_spawn``: no fork of this threaded process)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        # The watcher and any caller of HelperSupervisor.pid poll: without the lock one
        # thread's waitpid reaps the child and the other's fails with ECHILD before the
        # first has set returncode (seen as ChildProcessError in test_restart_has_no_window).
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


def default_helper_command() -> list[str]:
    """``qompr-pr-helper`` from PATH, else this interpreter running the daemon module."""
    found = shutil.which("qompr-pr-helper")
    return [found] if found else [sys.executable, "-m", "qompr.daemon.main"]


class HelperStartError(QomprError):
    """The helper exited before it was ready, *count* times in a row; the supervisor gave up.

    :param message: what happened, with the helper's last words.
    :param exits: the failed incarnations.
    :param stderr: the last lines the helper wrote on stderr.
    """

    def __init__(self, message: str, *, exits: Sequence[HelperExit], stderr: str) -> None:
        super().__init__(message)
        self.exits = list(exits)
        self.stderr = stderr


@attrs.frozen
class HelperExit:
    """One helper incarnation that ended.

    :param pid: its process id.
    :param returncode: its exit status, or minus the signal that killed it.
    :param lifetime: seconds it ran.
    """

    pid: int
    returncode: int
    lifetime: float


class HelperSupervisor:
    """Keeps ``qompr-pr-helper`` running on a socket the supervisor owns.

    :param socket_path: where QEMU connects (``pr-manager-helper,path=...``).
    :param pidfile: written with the current helper's pid at every (re)start.
    :param helper_args: options for the helper (``--backend ...``, ``-u qemu`` ...); ``-k`` is
        not allowed: the socket comes by activation.
    :param command: the helper program (default: :func:`default_helper_command`).
    :param managed_alias: the manager id QEMU uses for this helper; a disconnect event for
        it triggers :meth:`handle_status_changed`'s recovery.
    :param max_start_failures: give up after this many incarnations in a row exit before
        READY=1 (a helper that was ready once and dies later is always restarted).
    :param on_give_up: called (on the watcher thread) with the :class:`HelperStartError`
        when the supervisor gives up.
    """

    def __init__(
        self,
        socket_path: str,
        *,
        pidfile: str | None = None,
        helper_args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        managed_alias: str = "pr-helper0",
        max_start_failures: int = MAX_START_FAILURES,
        on_give_up: Callable[[HelperStartError], None] | None = None,
    ) -> None:
        if any(a in ("-k", "--socket") or a.startswith("--socket=") for a in helper_args):
            raise StateError("the supervisor owns the socket: do not pass -k/--socket")
        self.socket_path = socket_path
        self.pidfile = pidfile
        self.helper_args = list(helper_args)
        self.command = list(command) if command is not None else default_helper_command()
        self.managed_alias = managed_alias
        self.max_start_failures = max(1, max_start_failures)
        self.on_give_up = on_give_up
        self.exits: list[HelperExit] = []
        #: Set once the supervisor has given up (see :class:`HelperStartError`).
        self.error: HelperStartError | None = None
        self._failures = 0  # incarnations in a row that exited before READY=1
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._stderr_reader: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._notify: socket.socket | None = None
        self._notify_dir: str | None = None
        self._proc: _Child | None = None
        self._started_at = 0.0
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the socket, start the first helper and the watcher thread."""
        if self._listener is not None:
            raise StateError("supervisor already started")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # a stale socket from a previous run
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # 0600, like qemu-pr-helper.socket's SocketMode
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old_umask)
        listener.listen(BACKLOG)
        self._listener = listener
        self._notify_dir = tempfile.mkdtemp(prefix="qompr-supervise-")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(os.path.join(self._notify_dir, "notify"))
        self._notify.settimeout(0.2)
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="qompr-supervise", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        assert self._listener is not None and self._notify is not None
        env = {**os.environ, "NOTIFY_SOCKET": self._notify.getsockname()}
        self._ready.clear()
        self._stderr_tail.clear()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", _SHIM, "qompr-supervise", *self.command, *self.helper_args],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self._listener.fileno(), 3),
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
            )
        except BaseException:
            os.close(err_r)
            raise
        finally:
            os.close(err_w)
        self._stderr_reader = threading.Thread(
            target=self._pass_stderr, args=(err_r,), name="qompr-supervise-stderr", daemon=True
        )
        self._stderr_reader.start()
        if self.pidfile:  # before the pid is visible anywhere else
            tmp = f"{self.pidfile}.tmp"
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(f"{pid}\n")
            os.replace(tmp, self.pidfile)
        self._started_at = time.monotonic()
        self._proc = _Child(pid)
        log.info("helper started: pid %d on %s", pid, self.socket_path)

    def _pass_stderr(self, fd: int) -> None:
        """Pass the helper's stderr on to ours, line by line, keeping the last lines."""
        with open(fd, "rb", closefd=True) as stream:
            for raw in stream:
                line = raw.decode(errors="replace")
                self._stderr_tail.append(line)
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(line)
                    sys.stderr.flush()

    def _watch(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            self._drain_notify()
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            code = proc.poll()
            if code is None:
                continue
            lifetime = time.monotonic() - self._started_at
            self.exits.append(HelperExit(proc.pid, code, lifetime))
            log.warning("helper %d exited (%d) after %.1f s", proc.pid, code, lifetime)
            if self._stopping.is_set():
                return
            self._drain_notify()  # a READY=1 sent just before it died counts
            if self._ready.is_set():
                self._failures = 0
            else:
                self._failures += 1
                if self._failures >= self.max_start_failures:
                    self._give_up()
                    return
            backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF) if lifetime < CRASH_WINDOW else 0
            if backoff and self._stopping.wait(backoff):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._spawn()

    def _drain_notify(self) -> None:
        assert self._notify is not None
        try:
            message = self._notify.recv(4096)
        except (TimeoutError, OSError):
            return
        if b"READY=1" in message.split(b"\n"):
            self._ready.set()

    def _give_up(self) -> None:
        reader = self._stderr_reader
        if reader is not None:
            reader.join(2.0)  # the last words are in the pipe: read them all
        stderr = "".join(self._stderr_tail)
        last = self.exits[-1]
        how = f"status {last.returncode}" if last.returncode >= 0 else f"signal {-last.returncode}"
        message = (
            f"the helper exited before it was ready {self._failures} times in a row "
            f"(last: {how}); not restarting it"
        )
        if stderr.strip():
            message += f": {stderr.strip().splitlines()[-1]}"
        self.error = HelperStartError(message, exits=self.exits[-self._failures :], stderr=stderr)
        log.error("%s", message)
        self._ready.set()  # wake wait_ready(), which raises
        if self.on_give_up is not None:
            try:
                self.on_give_up(self.error)
            except Exception:
                log.exception("on_give_up failed")

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until the current helper has sent ``READY=1``.

        :raises HelperStartError: the supervisor gave up on a helper that never got ready.
        """
        ready = self._ready.wait(timeout)
        if self.error is not None:
            raise self.error
        return ready

    @property
    def pid(self) -> int | None:
        """The current helper's pid."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def restarts(self) -> int:
        return len(self.exits)

    def handle_status_changed(self, id: str, connected: bool) -> None:
        """React to QEMU's PR_MANAGER_STATUS_CHANGED as libvirt does: ignore connects and
        other managers; for a disconnect of ours, make sure a helper runs (the watcher also
        restarts it on its own; this covers a helper that is alive but wedged)."""
        if connected or id != self.managed_alias:
            return
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None and not self._responsive():
                log.warning("helper %d does not answer; restarting it", proc.pid)
                proc.send_signal(signal.SIGKILL)

    def _responsive(self, timeout: float = 2.0) -> bool:
        """Whether a helper completes the 4-byte handshake on the socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(self.socket_path)
                got = b""
                while len(got) < 4:
                    chunk = sock.recv(4 - len(got))
                    if not chunk:
                        return False
                    got += chunk
                sock.sendall(b"\0\0\0\0")
            except OSError:
                return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the helper (SIGTERM: it finishes in-flight requests), remove the socket."""
        self._stopping.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if proc.wait(timeout) is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        for sock in (self._listener, self._notify):
            if sock is not None:
                sock.close()
        self._listener = self._notify = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        if self.pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.pidfile)
        if self._notify_dir:
            shutil.rmtree(self._notify_dir, ignore_errors=True)

    def __enter__(self) -> HelperSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
