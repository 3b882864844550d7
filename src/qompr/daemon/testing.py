# SPDX-License-Identifier: MIT
"""Testing kit for the helper protocol (trio.testing-style): raw-wire scripts and an
in-process server.  Tests only; nothing in qompr imports it.

:func:`run_script` plays a :class:`Script` (bytes and kinds of fds, chunk by chunk) against a
helper socket, ends it with a probe request and a half-close, and returns everything the
helper sent back, parsed into :class:`Reply` values.  The same script against qemu-pr-helper
and qompr-pr-helper must give the same :class:`Outcome`.

:class:`InProcessServer` runs a :class:`~qompr.daemon.HelperServer` on a thread of this
process, for fast tests that need no subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from qompr.daemon import HelperServer


def pr_in(alloc: int = 255, action: int = 0) -> bytes:
    """A 16-byte PERSISTENT RESERVE IN CDB."""
    return (bytes([0x5E, action, 0, 0, 0, 0, 0]) + alloc.to_bytes(2, "big")).ljust(16, b"\0")


def pr_out(length: int = 24, action: int = 0, type_: int = 0) -> bytes:
    """A 16-byte PERSISTENT RESERVE OUT CDB with *length* in bytes 7-8."""
    return (bytes([0x5F, action, type_, 0, 0, 0, 0]) + length.to_bytes(2, "big")).ljust(16, b"\0")


HANDSHAKE = b"\0\0\0\0"


@attrs.frozen
class Step:
    """One ``sendmsg``: bytes, and the kinds of fds that ride on them."""

    data: bytes
    fds: tuple[str, ...] = ()


@attrs.frozen
class Script:
    """A conversation: steps, then (unless *probe* is false) a PR OUT probe on a read-only
    fd, whose answer shows whether the connection was still alive and in step."""

    name: str
    steps: tuple[Step, ...]
    probe: bool = True
    needs: tuple[str, ...] = ()


@attrs.frozen
class Reply:
    """One parsed response."""

    status: int
    size: int
    sense: bytes
    data: bytes


@attrs.frozen
class Outcome:
    """What the helper sent back before closing.

    :param closed: whether a send failed because the helper had already closed; timing
        decides that, so it does not take part in comparisons.
    """

    features: bytes
    replies: tuple[Reply, ...]
    leftover: bytes
    closed: bool = attrs.field(eq=False)

    def normalised(self) -> Outcome:
        """The outcome with sense bytes past the 18 built ones zeroed (the documented fix:
        qemu-pr-helper sends stack garbage there on its read-only-fd path)."""
        replies = tuple(
            attrs.evolve(r, sense=r.sense[:18] + bytes(len(r.sense[18:]))) for r in self.replies
        )
        return attrs.evolve(self, replies=replies)


PROBE = Step(pr_out(0), ("null-ro",))


class FdFactory:
    """Makes fresh fds of named kinds; closes them all at the end."""

    def __init__(self, workdir: Path, loop_device: str | None = None) -> None:
        self.workdir = workdir
        self.loop_device = loop_device
        self.opened: list[int] = []
        self.keep: list[Any] = []
        reg = workdir / "regular"
        if not reg.exists():
            reg.write_bytes(b"x" * 4096)
        self.regular = str(reg)

    def make(self, kind: str) -> int:
        fd = self._make(kind)
        self.opened.append(fd)
        return fd

    def _make(self, kind: str) -> int:
        if kind == "null":
            return os.open("/dev/null", os.O_RDWR)
        if kind == "null-ro":
            return os.open("/dev/null", os.O_RDONLY)
        if kind == "null-wo":
            return os.open("/dev/null", os.O_WRONLY)
        if kind == "zero":
            return os.open("/dev/zero", os.O_RDWR)
        if kind == "reg":
            return os.open(self.regular, os.O_RDWR)
        if kind == "reg-ro":
            return os.open(self.regular, os.O_RDONLY)
        if kind == "dir":
            return os.open(str(self.workdir), os.O_RDONLY | os.O_DIRECTORY)
        if kind in ("pipe-r", "pipe-w"):
            r, w = os.pipe()
            mine, other = (r, w) if kind == "pipe-r" else (w, r)
            self.opened.append(other)
            return mine
        if kind == "sock":
            a, b = socket.socketpair()
            self.keep += [a, b]
            return os.dup(a.fileno())
        if kind == "eventfd":
            return os.eventfd(0)
        if kind == "memfd":
            return os.memfd_create("qompr-test")
        if kind == "ptmx":
            return os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
        if kind == "proc-ro":
            return os.open("/proc/self/status", os.O_RDONLY)
        if kind in ("loop", "loop-ro"):
            if self.loop_device is None:
                raise LookupError("no loop device")
            mode = os.O_RDWR if kind == "loop" else os.O_RDONLY
            return os.open(self.loop_device, mode)
        raise ValueError(kind)

    def close(self) -> None:
        for fd in self.opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        for obj in self.keep:
            obj.close()
        self.opened.clear()
        self.keep.clear()


@contextlib.contextmanager
def loop_device(directory: Path) -> Iterator[str]:
    """A zeroed 1 MiB image in *directory* attached as a loop block device (``losetup``),
    detached afterwards: a real block device that is not SCSI (the ``loop`` fd kinds).

    :raises OSError: when it cannot be attached (not root, no ``losetup``, no free loop
        device); the message says why.
    """
    image = directory / "loop.img"
    image.write_bytes(bytes(1 << 20))
    proc = subprocess.run(
        ["losetup", "--find", "--show", str(image)], capture_output=True, text=True, check=False
    )
    device = proc.stdout.strip()
    if proc.returncode != 0 or not device:
        raise OSError(proc.stderr.strip() or f"losetup exited with {proc.returncode}")
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def parse_stream(stream: bytes) -> tuple[bytes, tuple[Reply, ...], bytes]:
    """Split what a helper sent into its feature bytes, replies, and leftover bytes."""
    features, rest = stream[:4], stream[4:]
    replies = []
    while len(rest) >= 104:
        status, size = struct.unpack(">ii", rest[:8])
        if size < 0 or len(rest) < 104 + size:
            break
        replies.append(Reply(status, size, rest[8:104], rest[104 : 104 + size]))
        rest = rest[104 + size :]
    return features, tuple(replies), rest


def run_script(path: str, script: Script, fds: FdFactory, *, timeout: float = 5.0) -> Outcome:
    """Play *script* on a new connection to *path* and collect the helper's answers.

    Every step is one ``sendmsg``.  After the steps and the probe the write side is shut
    down, so the helper sees end-of-file and closes once it has answered what it read.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    chunks: list[bytes] = []
    closed = False
    try:
        steps = (*script.steps, PROBE) if script.probe else script.steps
        for step in steps:
            descriptors = [fds.make(kind) for kind in step.fds]
            try:
                if descriptors:
                    socket.send_fds(sock, [step.data], descriptors)
                else:
                    sock.sendall(step.data)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(
                    f"{script.name}: the helper neither answered nor closed"
                ) from None
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
        fds.close()
    features, replies, leftover = parse_stream(b"".join(chunks))
    return Outcome(features, replies, leftover, closed)


def open_fd_count(pid: int | None = None) -> int:
    """How many fds a process has open."""
    return len(os.listdir(f"/proc/{pid or os.getpid()}/fd"))


def wait_for_socket(path: str, timeout: float = 10.0, proc: Any = None) -> None:
    """Wait until something listens on *path* (and *proc*, if given, is still alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the helper exited with status {proc.returncode}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {path}")


class InProcessServer:
    """A :class:`HelperServer` on a temporary socket, served by a thread of this process.

    :param kwargs: passed to :class:`HelperServer`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="qompr-srv-")
        self.path = os.path.join(self._tmp.name, "helper.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(128)
        self.server = HelperServer(self.listener, **kwargs)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # pragma: no cover - reported by stop()
            self._error = exc

    def __enter__(self) -> InProcessServer:
        self._thread.start()
        wait_for_socket(self.path)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the server did not stop"
        if self._error is not None:
            raise self._error

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._thread.is_alive():
                self.stop()
        finally:
            self._tmp.cleanup()


@contextlib.contextmanager
def connected(path: str, *, handshake: bool = True) -> Iterator[socket.socket]:
    """A raw connection to a helper, optionally past the handshake."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    try:
        if handshake:
            assert recv_exact(sock, 4) == HANDSHAKE
            sock.sendall(HANDSHAKE)
        yield sock
    finally:
        sock.close()


def recv_exact(sock: socket.socket, size: int) -> bytes:
    """Exactly *size* bytes, or AssertionError at end of file."""
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise AssertionError(f"end of file after {len(buf)} of {size} bytes")
        buf += chunk
    return buf


def request(
    sock: socket.socket, cdb: bytes, fd: int | None, data: bytes = b""
) -> tuple[int, bytes, bytes]:
    """Send one request and read its reply: (status, 96 sense bytes, data)."""
    if fd is None:
        sock.sendall(cdb + data)
    else:
        socket.send_fds(sock, [cdb + data], [fd])
    head = recv_exact(sock, 104)
    status, size = struct.unpack(">ii", head[:8])
    return status, head[8:], recv_exact(sock, size) if size else b""


def is_closed(sock: socket.socket, timeout: float = 2.0) -> bool:
    """Whether the peer closed *sock* (end of file or reset) within *timeout*."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class HelperProcess:
    """A helper program (qemu-pr-helper or qompr-pr-helper) on a temporary socket.

    :param argv: the command without ``-k``; ``-k SOCKET`` is appended.
    :param workdir: where the socket goes (a new temporary directory if omitted).
    :param env: extra environment variables.
    """

    def __init__(
        self, argv: list[str], workdir: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="qompr-helper-")
        base = workdir or (self._tmp.name if self._tmp else ".")
        self.path = os.path.join(base, "helper.sock")
        self.argv = [*argv, "-k", self.path]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> HelperProcess:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for_socket(self.path, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str]:
        """Signal the helper and wait: (exit status, stderr)."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        return proc.returncode, err.decode(errors="replace")

    def __enter__(self) -> HelperProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
