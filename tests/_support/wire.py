# SPDX-License-Identifier: MIT
"""Raw-wire conversations for comparing helpers byte for byte (qemu-pr-helper against
qompr-pr-helper): the differential and real-helper interop tests share them.

:func:`run_script` plays a :class:`Script` (bytes and kinds of fds, one ``sendmsg`` per
:class:`Step`) against a helper socket, ends it with a probe request and a half-close, and
returns everything the helper sent back, parsed into :class:`Reply` values.  The same script
against both helpers must give the same :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

import attrs

from qompr.testing import REPLY_HEADER_SIZE
from qompr.testing import FdFactory
from qompr.testing import pr_out

__all__ = ["PROBE", "Outcome", "Reply", "Script", "Step", "parse_stream", "run_script"]


@attrs.frozen
class Step:
    """One ``sendmsg``: bytes, and the kinds of fds (:data:`qompr.testing.FD_KINDS`) that
    ride on them."""

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


def parse_stream(stream: bytes) -> tuple[bytes, tuple[Reply, ...], bytes]:
    """Split what a helper sent into its feature bytes, replies, and leftover bytes."""
    features, rest = stream[:4], stream[4:]
    replies = []
    while len(rest) >= REPLY_HEADER_SIZE:
        status, size = struct.unpack(">ii", rest[:8])
        if size < 0 or len(rest) < REPLY_HEADER_SIZE + size:
            break
        end = REPLY_HEADER_SIZE + size
        replies.append(Reply(status, size, rest[8:REPLY_HEADER_SIZE], rest[REPLY_HEADER_SIZE:end]))
        rest = rest[end:]
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
