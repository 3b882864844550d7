# SPDX-License-Identifier: MIT
"""A helper program (``qompr-pr-helper`` or QEMU's ``qemu-pr-helper``) run for a test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from typing import IO

from qompr.testing._errors import HelperExitedError
from qompr.testing._errors import TestingError
from qompr.testing._wire import wait_for_socket

__all__ = ["QOMPR_PR_HELPER", "HelperProcess"]

#: The command that runs this installation's ``qompr-pr-helper`` with this interpreter
#: (so it works in a virtualenv that is not activated).
QOMPR_PR_HELPER: tuple[str, ...] = (sys.executable, "-m", "qompr.daemon.main")


class HelperProcess:
    """A helper program listening on a socket of its own, started by :meth:`start` (which
    waits until it listens) and stopped by :meth:`stop`.  As a context manager it starts on
    entry and stops on exit.

    :param argv: the command without ``-k``; ``-k SOCKET`` is appended.  See
        :meth:`qompr` for qompr's own helper.
    :param workdir: where the socket goes (a new temporary directory if omitted).
    :param env: environment variables added to this process's.
    """

    def __init__(
        self, argv: list[str], workdir: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="qompr-helper-")
        base = workdir if workdir else self._tmp.name if self._tmp else "."
        #: The helper's socket.
        self.path = os.path.join(base, "helper.sock")
        self.argv = [*argv, "-k", self.path]
        self.env = {**os.environ, **(env or {})}
        #: The running program, once started.
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @classmethod
    def qompr(
        cls, *args: str, workdir: str | None = None, env: dict[str, str] | None = None
    ) -> HelperProcess:
        """``qompr-pr-helper`` with these options (for instance ``--backend OBJECT``)."""
        return cls([*QOMPR_PR_HELPER, *args], workdir, env)

    @property
    def pid(self) -> int:
        """The helper's process id.

        :raises TestingError: before :meth:`start`.
        """
        return self._running().pid

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise TestingError(f"{self.argv[0]} has not been started")
        return self.proc

    def start(self, timeout: float = 10.0) -> HelperProcess:
        """Run the helper and wait until it accepts connections.

        :raises HelperExitedError: it exited first (its status and stderr are attached).
        :raises WaitTimeoutError: it did not listen within *timeout* seconds (it is killed).
        """
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        # A file, not a pipe: a helper that logs a lot must never block on a full pipe.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - stop() closes it
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stderr=self._stderr
        )
        try:
            wait_for_socket(self.path, timeout, proc=self.proc)
        except HelperExitedError as exc:
            stderr = self._read_stderr()
            raise HelperExitedError(exc.message, status=exc.status, stderr=stderr) from None
        except BaseException:
            self.stop(signal.SIGKILL)
            raise
        return self

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        self._stderr = None
        return text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str]:
        """Send *sig* (unless it already exited) and wait; kill it after *timeout* seconds.

        :returns: ``(exit status, stderr)``.
        :raises TestingError: before :meth:`start`.
        """
        proc = self._running()
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode, self._read_stderr()

    def __enter__(self) -> HelperProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.stop()
        finally:
            if self._stderr is not None:
                self._stderr.close()
            if self._tmp is not None:
                self._tmp.cleanup()
