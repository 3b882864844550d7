# SPDX-License-Identifier: MIT
"""Fake devices: file descriptors of every kind a manager may be handed, and a loop device.

A pr-manager receives whatever fd a client passes: QEMU passes the disk's, a hostile client
anything.  :class:`FdFactory` makes fresh fds of named kinds (:data:`FD_KINDS`) and closes
them all at the end, so a test can throw each kind at a manager or a helper and check the
answer; :func:`open_fd_count` shows whether the code under test leaked any.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FD_KINDS", "FdFactory", "loop_device", "open_fd_count"]

#: The kinds :meth:`FdFactory.make` knows, and what each is.
FD_KINDS: dict[str, str] = {
    "null": "/dev/null, read-write (a character device)",
    "null-ro": "/dev/null, read-only",
    "null-wo": "/dev/null, write-only",
    "zero": "/dev/zero, read-write",
    "reg": "a 4 KiB regular file, read-write (an emulated logical unit)",
    "reg-ro": "the same regular file, read-only",
    "dir": "the working directory (O_DIRECTORY)",
    "pipe-r": "the read end of a pipe",
    "pipe-w": "the write end of a pipe",
    "sock": "one end of a unix socket pair",
    "eventfd": "an eventfd",
    "memfd": "a memfd",
    "ptmx": "a pseudo-terminal master",
    "proc-ro": "/proc/self/status, read-only",
    "loop": "the factory's loop block device, read-write (see loop_device())",
    "loop-ro": "the same loop device, read-only",
}


class FdFactory:
    """Makes fresh fds of the kinds in :data:`FD_KINDS`; :meth:`close` closes them all.

    Usable as a context manager.

    :param workdir: an existing directory for the regular file (``regular``) and ``dir``.
    :param loop_device: a block device path for the ``loop`` kinds (see :func:`loop_device`).
    """

    def __init__(self, workdir: Path, loop_device: str | None = None) -> None:
        self.workdir = workdir
        self.loop_device = loop_device
        #: The fds made and not yet closed (including the other ends of pipes).
        self.opened: list[int] = []
        self._sockets: list[socket.socket] = []
        regular = workdir / "regular"
        if not regular.exists():
            regular.write_bytes(b"x" * 4096)
        self.regular = str(regular)

    def make(self, kind: str) -> int:
        """A new fd of *kind*; the factory closes it in :meth:`close`.

        :raises ValueError: for a kind not in :data:`FD_KINDS`.
        :raises LookupError: for the ``loop`` kinds when the factory has no loop device.
        :raises OSError: when the system refuses to make it.
        """
        fd = self._make(kind)
        self.opened.append(fd)
        return fd

    def _make(self, kind: str) -> int:
        simple = {
            "null": ("/dev/null", os.O_RDWR),
            "null-ro": ("/dev/null", os.O_RDONLY),
            "null-wo": ("/dev/null", os.O_WRONLY),
            "zero": ("/dev/zero", os.O_RDWR),
            "reg": (self.regular, os.O_RDWR),
            "reg-ro": (self.regular, os.O_RDONLY),
            "dir": (str(self.workdir), os.O_RDONLY | os.O_DIRECTORY),
            "ptmx": ("/dev/ptmx", os.O_RDWR | os.O_NOCTTY),
            "proc-ro": ("/proc/self/status", os.O_RDONLY),
        }
        if kind in simple:
            path, flags = simple[kind]
            return os.open(path, flags)
        if kind in ("pipe-r", "pipe-w"):
            r, w = os.pipe()
            mine, other = (r, w) if kind == "pipe-r" else (w, r)
            self.opened.append(other)
            return mine
        if kind == "sock":
            a, b = socket.socketpair()
            self._sockets += [a, b]
            return os.dup(a.fileno())
        if kind == "eventfd":
            return os.eventfd(0)
        if kind == "memfd":
            return os.memfd_create("qompr-test")
        if kind in ("loop", "loop-ro"):
            if self.loop_device is None:
                raise LookupError("this FdFactory has no loop device")
            return os.open(self.loop_device, os.O_RDWR if kind == "loop" else os.O_RDONLY)
        raise ValueError(f"unknown fd kind {kind!r} (known: {', '.join(FD_KINDS)})")

    def close(self) -> None:
        """Close every fd made so far (those already closed elsewhere are skipped)."""
        for fd in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        for sock in self._sockets:
            sock.close()
        self.opened.clear()
        self._sockets.clear()

    def __enter__(self) -> FdFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def loop_device(directory: Path) -> Iterator[str]:
    """A zeroed 1 MiB image in *directory* attached as a loop block device (``losetup``),
    detached afterwards: a real block device that is not SCSI.

    :raises OSError: when it cannot be attached (not root, no ``losetup``, no free loop
        device); the message says why.
    """
    image = directory / "loop.img"
    image.write_bytes(bytes(1 << 20))
    try:
        proc = subprocess.run(
            ["losetup", "--find", "--show", str(image)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise OSError(f"losetup is not installed: {exc}") from exc
    device = proc.stdout.strip()
    if proc.returncode != 0 or not device:
        raise OSError(proc.stderr.strip() or f"losetup exited with {proc.returncode}")
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def open_fd_count(pid: int | None = None) -> int:
    """How many fds process *pid* (default: this one) has open, from ``/proc/PID/fd``."""
    return len(os.listdir(f"/proc/{pid if pid is not None else os.getpid()}/fd"))
